// Where libtorch is. One lookup serves the loader (which libtorch a prebuilt binary loads), the
// install step and the source build; plus the download of a matching libtorch into the cache.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { cacheDir } from '../util/cache';
import { download as downloadFile, fetchOpener } from '../util/download';

/** The libtorch a source build downloads when none is found. */
export const LIBTORCH_VERSION = '2.13.0';

export interface Libtorch {
  /** The folder holding lib/ and share/cmake/Torch: a libtorch zip's `libtorch/`, or a pip `torch/`. */
  root: string;
  /** "2.13.0": the release, without the local "+cpu" part. */
  version: string;
  /** "cpu", or the CUDA toolkit it was built with as "cu130". */
  flavor: string;
  /** How it was found: "LIBTORCH", "cache", "python3", ... */
  source: string;
}

export const libDir = (lt: Libtorch) => path.join(lt.root, 'lib');
export const cmakeDir = (lt: Libtorch) => path.join(lt.root, 'share', 'cmake', 'Torch');

const read = (file: string) => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

/** What a libtorch folder is; null when it is not one. */
export function describe(root: string, source: string): Libtorch | null {
  const m = /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(read(path.join(root, 'share', 'cmake', 'Torch', 'TorchConfigVersion.cmake')));
  if (!m) return null;
  // A libtorch zip says "2.14.1+cu130" in build-version; a pip torch has the same in version.py.
  const versionPy = read(path.join(root, 'version.py'));
  const local = /\+(cpu|cu\d+)/.exec(read(path.join(root, 'build-version')) + versionPy);
  const cuda = /^cuda(?::[^=]*)?\s*=\s*'(\d+)\.(\d+)'/m.exec(versionPy);
  const hasCuda = fs.existsSync(path.join(root, 'lib', `libtorch_cuda${ext()}`));
  const flavor = local ? local[1] : cuda ? `cu${cuda[1]}${cuda[2]}` : hasCuda ? 'cuda' : 'cpu';
  return { root: path.resolve(root), version: m[1].replace(/\+.*/, ''), flavor, source };
}

const ext = () => (process.platform === 'darwin' ? '.dylib' : '.so');

/** The folder a downloaded libtorch lives in. */
export const libtorchCachePath = (version: string, flavor: string) => path.join(cacheDir(), `libtorch-${version}-${flavor}`, 'libtorch');

/** The torch package of one Python interpreter, located without importing it (an import takes seconds). */
function pythonTorch(py: string): Libtorch | null {
  try {
    const dir = execFileSync(py, ['-c', 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s else "")'], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 20000,
    }).trim();
    return dir ? describe(dir, py) : null;
  } catch {
    return null; // no such interpreter
  }
}

function cached(): Libtorch[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(cacheDir()).filter((n) => n.startsWith('libtorch-') && !n.includes('.tmp'));
  } catch { /* no cache yet */ }
  return names.sort().reverse().map((n) => describe(path.join(cacheDir(), n, 'libtorch'), 'cache')).filter((l): l is Libtorch => !!l);
}

export interface Lookup {
  found: Libtorch[];
  /** One line per place looked at, for error messages. */
  looked: string[];
}

/**
 * Every libtorch this machine offers, in the documented order: LIBTORCH (when set, the only one),
 * Torch_DIR, the cache (downloads), Python torch installs. `stopAt` ends the search at the first fit.
 */
export function lookup(stopAt: (lt: Libtorch) => boolean = () => false): Lookup {
  const looked: string[] = [];
  const found: Libtorch[] = [];
  const visit = (what: string, list: Libtorch[]) => {
    looked.push(`${what}: ${list.length ? list.map((l) => `${l.version} ${l.flavor} at ${l.root}`).join(', ') : 'none'}`);
    found.push(...list);
    return list.some(stopAt);
  };
  const env = process.env.LIBTORCH;
  if (env) {
    const lt = describe(env, 'LIBTORCH');
    if (!lt) looked.push(`LIBTORCH=${env}: not a libtorch folder (no share/cmake/Torch/TorchConfigVersion.cmake)`);
    else visit('LIBTORCH', [lt]);
    return { found, looked };
  }
  const torchDir = process.env.Torch_DIR;
  const fromTorchDir = torchDir ? describe(path.resolve(torchDir, '..', '..', '..'), 'Torch_DIR') : null;
  if (torchDir && visit('Torch_DIR', fromTorchDir ? [fromTorchDir] : [])) return { found, looked };
  if (visit(`cache ${cacheDir()}`, cached())) return { found, looked };
  // One interpreter at a time: each costs a process start.
  for (const py of [...new Set([process.env.PYTHON, 'python3', 'python'].filter((p): p is string => !!p))]) {
    const lt = pythonTorch(py);
    if (lt && found.some((f) => f.root === lt.root)) continue;
    if (visit(`Python torch (${py})`, lt ? [lt] : [])) break;
  }
  return { found, looked };
}

/** Whether a libtorch serves a binary built against `version` and `flavor`. */
export function fits(lt: Libtorch, version: string, flavor: string): boolean {
  if (lt.version !== version) return false;
  // A CPU binary runs on any build of its version; a CUDA one needs the same CUDA major version.
  return flavor === 'cpu' || cudaMajor(lt.flavor) === cudaMajor(flavor);
}

/** 13 for "cu130", 12 for "cu128"; null for "cpu". */
export function cudaMajor(flavor: string): number | null {
  const m = /^cu(\d+)\d$/.exec(flavor);
  return m ? Number(m[1]) : null;
}

/** The newest CUDA major version this machine's NVIDIA driver runs; null without a driver. */
export function driverCudaMajor(procText = read('/proc/driver/nvidia/version')): number | null {
  const m = /Kernel Module\s+(?:for \S+\s+)?(\d+)\./.exec(procText);
  if (!m) return null;
  const driver = Number(m[1]);
  // CUDA 13.x runs on drivers >= 580, 12.x on >= 525 (minor version compatibility).
  return driver >= 580 ? 13 : driver >= 525 ? 12 : 11;
}

/**
 * Loads libtorch's libraries into the process, so that a prebuilt binary (which records no path
 * to libtorch) finds them by name when it loads. They stay loaded (RTLD_NODELETE).
 */
export function preload(lt: Libtorch): void {
  const NODELETE = process.platform === 'darwin' ? 0x80 : 0x1000;
  // RTLD_LOCAL, as when the libraries load as a local build's dependencies: the addon finds them
  // by name (they are already loaded), nothing else in the process sees their symbols.
  const { RTLD_NOW, RTLD_LOCAL } = os.constants.dlopen as Record<string, number>;
  const names = ['libc10', 'libtorch_cpu', 'libc10_cuda', 'libtorch_cuda', 'libtorch'].map((n) => path.join(libDir(lt), n + ext()));
  for (const file of names.filter((f) => fs.existsSync(f))) {
    try {
      process.dlopen({ exports: {} }, file, RTLD_NOW | RTLD_LOCAL | NODELETE);
    } catch (e) {
      // Node says so for any library that is not an addon: it was loaded, which is all we want.
      const msg = (e as Error).message;
      if (!msg.includes('did not self-register')) throw new Error(`could not load ${file}: ${msg.split('\n')[0]}`);
    }
  }
}

export function downloadUrl(version: string, flavor: string): string {
  const base = (process.env.SDTORCH_LIBTORCH_MIRROR || 'https://download.pytorch.org/libtorch').replace(/\/$/, '');
  return `${base}/${flavor}/libtorch-shared-with-deps-${version}%2B${flavor}.zip`;
}

/**
 * Downloads libtorch `version` (`flavor`: cpu, cu126, cu128, cu130) into the cache, unless it is
 * there. Atomic: the zip goes to a .part file, the folder appears complete or not at all.
 */
export async function download(version: string, flavor: string, log: (line: string) => void = (l) => console.error(l)): Promise<Libtorch> {
  const dest = path.dirname(libtorchCachePath(version, flavor));
  const have = describe(libtorchCachePath(version, flavor), 'cache');
  if (have) return have;
  const url = downloadUrl(version, flavor);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const zip = `${dest}.zip`;
  const tmp = `${dest}.tmp-${process.pid}`;
  try {
    log(`sdtorch: downloading libtorch ${version} (${flavor}) from ${url}`);
    let shown = 0;
    await downloadFile({
      open: fetchOpener(url),
      dest: zip,
      label: `the download of ${url}`,
      onProgress: (got, total) => {
        if (total && got / total >= shown + 0.1) {
          shown = Math.floor((got / total) * 10) / 10;
          log(`sdtorch: ${Math.round(shown * 100)}% of ${(total / 2 ** 20).toFixed(0)} MB`);
        }
      },
    });
    fs.rmSync(tmp, { recursive: true, force: true });
    await unzip(zip, tmp);
    if (!describe(path.join(tmp, 'libtorch'), 'cache')) throw new Error(`${url} is not a libtorch zip (no libtorch/share/cmake/Torch in it)`);
    fs.renameSync(tmp, dest);
    log(`sdtorch: libtorch ${version} (${flavor}) is in ${dest}`);
    return describe(libtorchCachePath(version, flavor), 'cache')!;
  } finally {
    fs.rmSync(zip, { force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Extracts a zip into `dir`. yauzl refuses absolute names and "..", so nothing lands outside. */
async function unzip(zip: string, dir: string): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const yauzl = require('yauzl') as typeof import('yauzl');
  const zf = await new Promise<import('yauzl').ZipFile>((ok, fail) => yauzl.open(zip, { lazyEntries: true, autoClose: true }, (e, z) => (e ? fail(e) : ok(z!))));
  await new Promise<void>((ok, fail) => {
    zf.on('error', fail);
    zf.on('end', ok);
    zf.on('entry', (entry: import('yauzl').Entry) => {
      const target = path.join(dir, entry.fileName);
      const mode = (entry.externalFileAttributes >>> 16) & 0o777777;
      if (entry.fileName.endsWith('/')) {
        fs.mkdirSync(target, { recursive: true });
        return zf.readEntry();
      }
      fs.mkdirSync(path.dirname(target), { recursive: true });
      zf.openReadStream(entry, (e, stream) => {
        if (e) return fail(e);
        const isLink = (mode & 0o170000) === 0o120000;
        if (isLink) {
          // A symlink's data is its target; keep links inside the folder.
          const parts: Buffer[] = [];
          stream!.on('data', (c: Buffer) => parts.push(c));
          stream!.on('end', () => {
            const to = Buffer.concat(parts).toString();
            if (path.isAbsolute(to) || !path.resolve(path.dirname(target), to).startsWith(path.resolve(dir) + path.sep)) return fail(new Error(`refusing a link out of the folder: ${entry.fileName} -> ${to}`));
            fs.symlinkSync(to, target);
            zf.readEntry();
          });
          return;
        }
        pipeline(stream!, fs.createWriteStream(target, { mode: mode & 0o777 || 0o644 })).then(() => zf.readEntry(), fail);
      });
    });
    zf.readEntry();
  });
}
