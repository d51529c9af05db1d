// Small generic helpers shared by the tests: paths, a relative error, temp dirs, a python3 runner.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Tensor } from '../lib';

export const REPO_ROOT = path.resolve(__dirname, '..');

/** A file under test/fixtures. */
export function fixture(...parts: string[]): string {
  return path.join(REPO_ROOT, 'test', 'fixtures', ...parts);
}

/** ‖a − b‖ / ‖b‖ over all elements (0 when both are zero). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relErr: lengths differ (${a.length} vs ${b.length})`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** ‖a − b‖ / ‖b‖ of two tensors, computed natively in float64. */
export function relErrTensor(a: Tensor, b: Tensor): number {
  return a.sub(b).norm() / b.norm();
}

/** A fresh temp directory, removed by the returned cleanup function. */
export function tmpDir(prefix = 'sdtorch-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Runs `python3 -c script ...args` from the repo root; returns stdout, throws with stderr on failure. */
export function python(script: string, args: string[] = []): string {
  const r = spawnSync('python3', ['-c', script, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  if (r.error) throw new Error(`python3 could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`python3 failed (exit ${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** A folder that looks like an unpacked libtorch of `version` (no libraries in it). */
export function fakeLibtorch(root: string, version: string, local = 'cpu'): string {
  fs.mkdirSync(path.join(root, 'share', 'cmake', 'Torch'), { recursive: true });
  fs.mkdirSync(path.join(root, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(root, 'share', 'cmake', 'Torch', 'TorchConfigVersion.cmake'), `set(PACKAGE_VERSION "${version}")\n`);
  fs.writeFileSync(path.join(root, 'build-version'), `${version}+${local}\n`);
  return root;
}
