// A1111's short model hash, remembered in the cache so a new process does not re-read the file.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir } from '../util/cache';
import { writeFileAtomic } from '../util/fs';

const hashes = new Map<string, Promise<string>>();
const hashFile = () => path.join(cacheDir(), 'model-hashes.json');

async function knownHashes(): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(hashFile(), 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

/** Adds one hash to the file of known ones (the newest 200), atomically. */
async function rememberHash(key: string, hash: string): Promise<void> {
  const all = { ...(await knownHashes()), [key]: hash };
  await mkdir(path.dirname(hashFile()), { recursive: true });
  await writeFileAtomic(hashFile(), Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(all).slice(-200)))), { overwrite: true });
}

/** The sha256 (hex) of a file from byte `start` on, streamed. */
export function sha256File(file: string, start = 0): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file, { start, highWaterMark: 1 << 22 })
      .on('data', (chunk) => h.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The file a model's hash is taken of: the file itself, or a diffusers folder's UNet weights. */
async function hashedFile(model: string): Promise<string> {
  if (!(await stat(model)).isDirectory()) return model;
  const unet = path.join(model, 'unet');
  const names = (await readdir(unet)).filter((n) => /^diffusion_pytorch_model.*\.(safetensors|bin)$/.test(n)).sort();
  if (!names.length) throw new Error(`'${model}' has no unet/diffusion_pytorch_model weights to hash`);
  return path.join(unet, names[0]!);
}

/**
 * A1111's short model hash: the first 10 hex digits of the file's sha256, streamed (checkpoints are
 * gigabytes); for a diffusers folder, of its UNet weights file. Remembered per (path, size, mtime) in
 * memory and in the cache's model-hashes.json, so a new process (each CLI run) does not read the
 * whole file again.
 */
export async function modelHash(model: string): Promise<string> {
  const file = await hashedFile(model);
  return perFileVersion(hashes, file, async (full, key) => {
    const known = (await knownHashes())[key];
    if (typeof known === 'string' && /^[0-9a-f]{10}$/.test(known)) return known;
    const fresh = (await sha256File(full)).slice(0, 10);
    // A cache that cannot be written (read-only home) costs the next process a re-read, nothing more.
    await rememberHash(key, fresh).catch(() => undefined);
    return fresh;
  });
}

/**
 * `compute(path, key)` once per version of a file (its absolute path, size and mtime: the `key`),
 * remembered in `memo` for this process; a failure is not remembered.
 */
export async function perFileVersion(memo: Map<string, Promise<string>>, file: string, compute: (full: string, key: string) => Promise<string>): Promise<string> {
  const full = path.resolve(file);
  const st = await stat(full);
  const key = `${full}\0${st.size}\0${st.mtimeMs}`;
  let value = memo.get(key);
  if (value === undefined) {
    value = compute(full, key);
    memo.set(key, value);
    value.catch(() => memo.delete(key));
  }
  return value;
}
