// The random full-size SD 1.5 checkpoint the parity tests use (fixture recipe, seed 1234), made once
// per machine by scripts/make_random_sd15.py into SDTORCH_WEIGHTS_DIR (default .cache/weights).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './helpers';

export { REPO_ROOT as repoRoot };
export const weightsDir = process.env.SDTORCH_WEIGHTS_DIR ?? path.join(REPO_ROOT, '.cache', 'weights');
export const weights = {
  safetensors: path.join(weightsDir, 'sd15-random-1234.safetensors'),
  fp16: path.join(weightsDir, 'sd15-random-1234.fp16.safetensors'),
  ckpt: path.join(weightsDir, 'sd15-random-1234.ckpt'),
};

/** Makes the three files if any is missing (about a minute, 10.7 GB of disk). */
export function ensureWeights(): typeof weights {
  if (!Object.values(weights).every((p) => fs.existsSync(p))) {
    execFileSync('python3', [path.join(REPO_ROOT, 'scripts', 'make_random_sd15.py'), weightsDir], { stdio: 'inherit' });
  }
  return weights;
}
