// The CPU prebuilt binary that the loader and package tests use: `npm run build:prebuild` makes
// it (CI does); when it is missing it is built here once, against Python's torch (~2 minutes).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { python, REPO_ROOT } from './helpers';

export const pythonTorch = () => {
  const [dir, version] = python('import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__.split("+")[0])').trim().split('\n');
  return { dir, version };
};

export function cpuPrebuild(): string {
  const { dir, version } = pythonTorch();
  const file = path.join(REPO_ROOT, 'prebuilds', `${process.platform}-${process.arch}`, `sdtorch.cpu.torch-${version}.node`);
  if (!fs.existsSync(file)) {
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'prebuild.js'), '--libtorch', dir], { cwd: REPO_ROOT, stdio: 'inherit' });
    assert.equal(r.status, 0, 'scripts/prebuild.js failed');
  }
  assert.ok(fs.existsSync(file), `${file} was not made`);
  return file;
}
