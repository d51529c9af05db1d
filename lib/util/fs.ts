// The one atomic writer: every file sdtorch writes from TypeScript goes through here.
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { link, lstat, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

export interface WriteOptions {
  /** Replace an existing file (default false: an existing file is an error with code EEXIST). */
  overwrite?: boolean;
}

/**
 * Writes `data` to `file` atomically: a temporary file in the same directory, flushed, then
 * renamed (or, without overwrite, hard-linked so that an existing file is never replaced). No
 * temporary file is left behind, whatever happens.
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string, options: WriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (options.overwrite) await rename(tmp, file);
    else await publishNew(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function publishNew(tmp: string, file: string): Promise<void> {
  try {
    await link(tmp, file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw exists(file, e);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
    // no hard links on this filesystem: check, then rename (not race-free, but never clobbers knowingly)
    if (await lstat(file).then(() => true, () => false)) throw exists(file);
    await rename(tmp, file);
  }
}

const exists = (file: string, cause?: unknown) =>
  Object.assign(new Error(`${file} already exists; choose another name or allow overwriting`, { cause }), { code: 'EEXIST', path: file });

/** The first of `name.png`, `name-1.png`, `name-2.png`, ... that does not exist yet. */
export function uniquePath(file: string): string {
  const ext = path.extname(file);
  const stem = file.slice(0, file.length - ext.length);
  for (let i = 0; ; i++) {
    const candidate = i === 0 ? file : `${stem}-${i}${ext}`;
    try {
      lstatSync(candidate);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return candidate;
      throw e;
    }
  }
}
