// Getting a binary that loads: the install step (`npm install` runs it; `npx sdtorch setup` runs it
// by hand) and the source build (`npx sdtorch build`). Never silent: every outcome is said.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cmakeDir, download, driverCudaMajor, LIBTORCH_VERSION, lookup, type Libtorch } from './libtorch';
import { libtorchFor, packageRoot, prebuilds } from './load';

const say = (line: string) => console.error(`sdtorch: ${line}`);

/** Loads the package's loader in a fresh process: a binary that crashes cannot take us down. */
function tryLoad(env: NodeJS.ProcessEnv): { ok: boolean; detail: string } {
  const script = `const n = require(${JSON.stringify(path.join(__dirname, 'load'))});
    try { n.native(); } catch (e) { console.error(e.message); process.exit(1); }`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000, env: { ...process.env, ...env } });
  // The loader's message lists what it tried between "Tried:" and "Possible solutions:".
  const tried = /Tried:\n([\s\S]*?)\nPossible solutions:/.exec(r.stderr ?? '');
  return { ok: r.status === 0, detail: (tried ? tried[1] : r.stderr || r.error?.message || `exit ${r.status}`).trim().replace(/\s+/g, ' ') };
}

export interface SetupOptions {
  /** Download the libtorch a prebuilt binary needs when it is missing (default: unless SDTORCH_SKIP_DOWNLOAD=1). */
  download?: boolean;
  /** Build from source even when a prebuilt binary fits. */
  fromSource?: boolean;
}

/**
 * Makes sdtorch loadable: the best prebuilt binary with its libtorch (downloaded when missing),
 * else a build from source. Throws only when a source build was needed and failed.
 */
export async function setup(opts: SetupOptions = {}): Promise<void> {
  const allowDownload = opts.download ?? process.env.SDTORCH_SKIP_DOWNLOAD !== '1';
  const candidates = opts.fromSource || process.env.SDTORCH_BUILD_FROM_SOURCE === '1' ? [] : prebuilds();
  const unmet: string[] = []; // no libtorch for it
  const broken: string[] = []; // libtorch found, binary did not load
  for (const p of candidates) {
    let { libtorch } = libtorchFor(p);
    if (!libtorch && !allowDownload) {
      unmet.push(`${path.basename(p.file)} needs libtorch ${p.torch} (${p.flavor}); SDTORCH_SKIP_DOWNLOAD=1, so it was not downloaded`);
      continue;
    }
    if (!libtorch) {
      try {
        libtorch = await download(p.torch, p.flavor, say);
      } catch (e) {
        unmet.push(`${path.basename(p.file)} needs libtorch ${p.torch} (${p.flavor}); the download failed: ${(e as Error).message}`);
        continue;
      }
    }
    const r = tryLoad({ SDTORCH_VARIANT: p.flavor, SDTORCH_BINARY: '' });
    if (r.ok) {
      for (const line of unmet) say(`note: ${line}`);
      return say(`using the prebuilt binary ${path.relative(packageRoot, p.file)} with libtorch ${libtorch.version} from ${libtorch.root} (${libtorch.source})`);
    }
    broken.push(`${path.basename(p.file)} did not load with libtorch ${libtorch.version} from ${libtorch.root}: ${r.detail}`);
  }
  if (broken.length) {
    // A libtorch is there but the binary does not load with it (say, an older system library): a
    // source build for this machine is the way out.
    for (const line of [...unmet, ...broken]) say(`WARNING: ${line}`);
    say('building the native addon from source instead');
    await build();
    return;
  }
  if (unmet.length) {
    // A prebuilt binary fits this platform but its libtorch is missing: a source build would need a
    // libtorch too, so say what to do instead of failing the install.
    for (const line of unmet) say(`WARNING: ${line}`);
    say(`require('sdtorch') will fail until libtorch is there: run \`npx sdtorch setup\` with internet, ` +
      `or pip install torch==${candidates[0].torch}, or set LIBTORCH to an unpacked libtorch ${candidates[0].torch}; or build from source: npx sdtorch build`);
    return;
  }
  say(opts.fromSource || process.env.SDTORCH_BUILD_FROM_SOURCE === '1' ? 'building the native addon from source' : `no prebuilt binary for ${process.platform}-${process.arch}; building the native addon from source`);
  await build();
}

/** The libtorch a source build uses: the first one found, else a download for this machine's driver. */
async function libtorchForBuild(): Promise<Libtorch> {
  const r = lookup((lt) => !!lt);
  if (r.found.length) return r.found[0];
  if (process.env.LIBTORCH) throw new Error(`${r.looked.join('; ')}\n${HOWTO}`);
  if (process.env.SDTORCH_SKIP_DOWNLOAD === '1') throw new Error(`libtorch was not found (SDTORCH_SKIP_DOWNLOAD=1, so none was downloaded). Looked at:\n  ${r.looked.join('\n  ')}\n${HOWTO}`);
  const cuda = driverCudaMajor();
  const flavor = cuda === null || cuda < 12 ? 'cpu' : cuda >= 13 ? 'cu130' : 'cu128';
  try {
    return await download(LIBTORCH_VERSION, flavor, say);
  } catch (e) {
    throw new Error(`libtorch was not found and could not be downloaded (${(e as Error).message}).\n${HOWTO}`);
  }
}

const HOWTO = `Possible solutions:
  - pip install torch==${LIBTORCH_VERSION}   (sdtorch builds against the libtorch inside it), or
  - download libtorch from pytorch.org, unzip it and set LIBTORCH=/path/to/libtorch, or
  - set Torch_DIR to a folder holding TorchConfig.cmake.
Then run: npx sdtorch build`;

export interface BuildOptions {
  /** Default: the first libtorch found (see lookup), else a download. */
  libtorch?: Libtorch;
  /** The cmake-js build folder (default build/, whose Release/sdtorch.node the loader prefers). */
  out?: string;
  /** A relocatable binary with no recorded libtorch path, for prebuilds/. */
  prebuild?: boolean;
}

/** Builds the addon with cmake-js. Extra CMake definitions: SDTORCH_CMAKE_ARGS="-DX=1 -DY=2". */
export async function build(opts: BuildOptions = {}): Promise<string> {
  const lt = opts.libtorch ?? (await libtorchForBuild());
  say(`building against libtorch ${lt.version} (${lt.flavor}) from ${lt.root} (${lt.source})`);
  const out = path.resolve(opts.out ?? path.join(packageRoot, 'build'));
  const defs = [`Torch_DIR=${cmakeDir(lt)}`, `SDTORCH_PREBUILD=${opts.prebuild ? 'ON' : 'OFF'}`];
  const cuda = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].find((d) => d && fs.existsSync(path.join(d, 'bin')));
  // libtorch's CMake config looks for the CUDA toolkit of a CUDA build (it is not linked against).
  if (lt.flavor !== 'cpu' && cuda) defs.push(`CUDA_TOOLKIT_ROOT_DIR=${cuda}`, `CMAKE_CUDA_COMPILER=${path.join(cuda, 'bin', 'nvcc')}`);
  for (const d of (process.env.SDTORCH_CMAKE_ARGS ?? '').split(/\s+/).filter(Boolean)) defs.push(d.replace(/^-D/, ''));
  const jobs = String(Math.max(1, os.availableParallelism()));
  const r = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--directory', packageRoot, '--out', out, '--parallel', jobs, ...defs.map((d) => `--CD${d}`)], {
    cwd: packageRoot, stdio: ['ignore', 2, 2], env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
  });
  if (r.status !== 0) throw new Error(`the native build failed${r.error ? `: ${r.error.message}` : ' (see the compiler output above)'}. It needs a C++17 compiler and cmake >= 3.18.`);
  const file = path.join(out, 'Release', 'sdtorch.node');
  say(`built ${file}`);
  return file;
}
