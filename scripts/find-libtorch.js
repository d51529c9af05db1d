'use strict';
// Finds libtorch for the build, in the documented order: LIBTORCH, Torch_DIR, a Python torch
// install, else a download matching this machine's CUDA version (or CPU) into the cache.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');

const LIBTORCH_VERSION = '2.13.0';

function cmakeDirOf(root) {
  const dir = path.join(root, 'share', 'cmake', 'Torch');
  return fs.existsSync(path.join(dir, 'TorchConfig.cmake')) ? dir : null;
}

function fromPython() {
  for (const py of [process.env.PYTHON, 'python3', 'python'].filter(Boolean)) {
    try {
      const out = execFileSync(py, ['-c', 'import torch, os; print(os.path.dirname(torch.__file__))'], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000,
      }).trim();
      if (cmakeDirOf(out)) return out;
    } catch { /* no torch for this interpreter */ }
  }
  return null;
}

function cudaVersion() {
  try {
    const out = execFileSync('nvidia-smi', [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 });
    const m = /CUDA Version:\s*(\d+)\.(\d+)/.exec(out);
    return m ? `${m[1]}.${m[2]}` : null;
  } catch { return null; }
}

function cacheDir() {
  return process.env.SDTORCH_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'sdtorch');
}

// The libtorch zip for a driver's CUDA version: the newest toolkit variant the driver supports.
function downloadVariant(cuda) {
  if (!cuda) return 'cpu';
  const [major, minor] = cuda.split('.').map(Number);
  const v = major * 10 + minor;
  if (v >= 130) return 'cu130';
  if (v >= 128) return 'cu128';
  if (v >= 126) return 'cu126';
  return 'cpu';
}

function download(variant) {
  const dest = path.join(cacheDir(), `libtorch-${LIBTORCH_VERSION}-${variant}`);
  if (cmakeDirOf(path.join(dest, 'libtorch'))) return path.join(dest, 'libtorch');
  const url = `https://download.pytorch.org/libtorch/${variant}/libtorch-shared-with-deps-${LIBTORCH_VERSION}%2B${variant}.zip`;
  fs.mkdirSync(dest, { recursive: true });
  const zip = path.join(dest, 'libtorch.zip.part');
  console.error(`sdtorch: downloading libtorch ${LIBTORCH_VERSION} (${variant}) from ${url}`);
  execFileSync('curl', ['-fL', '--retry', '2', '-o', zip, url], { stdio: 'inherit' });
  execFileSync('unzip', ['-q', '-o', zip, '-d', dest], { stdio: 'inherit' });
  fs.unlinkSync(zip);
  return path.join(dest, 'libtorch');
}

// Returns { cmakeDir, source } or throws an Error saying what to install or set.
function findLibtorch({ allowDownload = true } = {}) {
  if (process.env.LIBTORCH) {
    const dir = cmakeDirOf(process.env.LIBTORCH);
    if (!dir) throw new Error(`LIBTORCH=${process.env.LIBTORCH} has no share/cmake/Torch/TorchConfig.cmake; point it at an unpacked libtorch folder`);
    return { cmakeDir: dir, source: 'LIBTORCH' };
  }
  if (process.env.Torch_DIR) {
    if (!fs.existsSync(path.join(process.env.Torch_DIR, 'TorchConfig.cmake'))) throw new Error(`Torch_DIR=${process.env.Torch_DIR} has no TorchConfig.cmake`);
    return { cmakeDir: process.env.Torch_DIR, source: 'Torch_DIR' };
  }
  const py = fromPython();
  if (py) return { cmakeDir: cmakeDirOf(py), source: `python torch (${py})` };
  if (allowDownload && process.env.SDTORCH_NO_DOWNLOAD !== '1') {
    try {
      const root = download(downloadVariant(cudaVersion()));
      return { cmakeDir: cmakeDirOf(root), source: `downloaded (${root})` };
    } catch (e) {
      throw new Error(`could not download libtorch (${e.message}).\n${HOWTO}`);
    }
  }
  throw new Error(`libtorch was not found.\n${HOWTO}`);
}

const HOWTO = `Possible solutions:
  - pip install torch==${LIBTORCH_VERSION}   (sdtorch builds against the libtorch inside it), or
  - download libtorch ${LIBTORCH_VERSION} from pytorch.org, unzip it and set LIBTORCH=/path/to/libtorch, or
  - set Torch_DIR to a folder holding TorchConfig.cmake.
Then run: npm rebuild sdtorch   (or: npx sdtorch build)`;

module.exports = { findLibtorch, downloadVariant, cudaVersion, LIBTORCH_VERSION };

if (require.main === module) {
  try {
    console.log(JSON.stringify(findLibtorch({ allowDownload: false })));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
