// The random full-size checkpoints the parity tests use (fixture recipe), made once per machine into
// SDTORCH_WEIGHTS_DIR (default .cache/weights): SD 1.5 by scripts/make_random_sd15.py; SD 2.x,
// inpainting, SDXL and a VAE alone by scripts/make_random_checkpoints.py. All of them take 34 GB; with
// SDTORCH_TRANSIENT_WEIGHTS=1 (CI) the files this process made are deleted when the disk is short for
// the next one (made again if asked for again) and at the end of the run.
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
  const files = Object.values(weights);
  if (!files.every((p) => fs.existsSync(p))) {
    makeRoom(10.7, files);
    execFileSync('python3', [path.join(REPO_ROOT, 'scripts', 'make_random_sd15.py'), weightsDir], { stdio: 'inherit' });
    made.push(...files);
  }
  return weights;
}

/** The files of make_random_checkpoints.py (all fp16), by its --only names. */
export const familyWeights = {
  /** SD 2.1 768-v layout (OpenCLIP ViT-H text encoder), seed 1234. */
  'sd21-v': path.join(weightsDir, 'sd21-v-random-1234.fp16.safetensors'),
  /** The same tensors in a .ckpt with global_step 875000: the 512 epsilon base model. */
  'sd21-base': path.join(weightsDir, 'sd21-base-random-1234.fp16.ckpt'),
  /** SD 1.5 layout with a 9-channel UNet input, seed 1234. */
  'sd15-inpaint': path.join(weightsDir, 'sd15-inpaint-random-1234.fp16.safetensors'),
  /** SD 2 layout with a 9-channel UNet input, seed 1234. */
  'sd2-inpaint': path.join(weightsDir, 'sd2-inpaint-random-1234.fp16.safetensors'),
  /** A VAE alone (encoder.*, decoder.*, quant_conv.*, post_quant_conv.*), seed 4321. */
  vae: path.join(weightsDir, 'vae-random-4321.fp16.safetensors'),
  /** SDXL base 1.0 layout (CLIP ViT-L + OpenCLIP bigG under conditioner.embedders.*), seed 1234. */
  sdxl: path.join(weightsDir, 'sdxl-base-random-1234.fp16.safetensors'),
  /** SDXL refiner 1.0 layout (bigG alone), seed 1234. */
  'sdxl-refiner': path.join(weightsDir, 'sdxl-refiner-random-1234.fp16.safetensors'),
};
export type FamilyWeight = keyof typeof familyWeights;

/** Each file's size in GB (what makeRoom asks the disk for). */
const familySizeGb: Record<FamilyWeight, number> = {
  'sd21-v': 2.6, 'sd21-base': 2.6, 'sd15-inpaint': 2.1, 'sd2-inpaint': 2.6, vae: 0.17, sdxl: 6.9, 'sdxl-refiner': 6.1,
};

const transient = process.env.SDTORCH_TRANSIENT_WEIGHTS === '1';
/** The files this process wrote, oldest first. */
const made: string[] = [];
const GB = 1e9;

/**
 * Before writing `gb` of new files: with transient weights, deletes files this process made (oldest
 * first, never those in `keep`) until the disk has that plus 2 GB free; then throws, naming the
 * shortfall, if it still has not (a full disk fails every test that writes afterwards).
 */
function makeRoom(gb: number, keep: string[]): void {
  fs.mkdirSync(weightsDir, { recursive: true });
  const free = () => { const s = fs.statfsSync(weightsDir); return (s.bavail * s.bsize) / GB; };
  for (const file of transient ? [...made] : []) {
    if (free() >= gb + 2) break;
    if (keep.includes(file)) continue;
    fs.rmSync(file, { force: true });
    made.splice(made.indexOf(file), 1);
    console.log(`  deleted ${path.basename(file)} to make room (made again if a later test asks for it)`);
  }
  if (free() < gb + 2) {
    throw new Error(`the random test checkpoints need ${gb.toFixed(1)} GB (+2 GB spare) in ${weightsDir}, which has ` +
      `${free().toFixed(1)} GB free: free some space, or point SDTORCH_WEIGHTS_DIR at a disk with room` +
      (transient ? '' : ' (SDTORCH_TRANSIENT_WEIGHTS=1 deletes those a test run made once it needs the room)'));
  }
}

/** With transient weights, deletes every file this process made (the root hook of test/setup.ts). */
export function releaseWeights(): void {
  if (!transient) return;
  for (const file of made.splice(0)) fs.rmSync(file, { force: true });
}

/**
 * Makes those of `names` (default all) that are missing, in one run of the script, which prints each
 * file's time and size (on 2 cores: ~15-40 s and 2.1-2.6 GB a checkpoint, 1 s and 0.17 GB the VAE).
 */
export function ensureFamilyWeights(...names: FamilyWeight[]): typeof familyWeights {
  const wanted = names.length ? names : (Object.keys(familyWeights) as FamilyWeight[]);
  const missing = wanted.filter((n) => !fs.existsSync(familyWeights[n]));
  if (missing.length) {
    makeRoom(missing.reduce((gb, n) => gb + familySizeGb[n], 0), wanted.map((n) => familyWeights[n]));
    const start = Date.now();
    const script = path.join(REPO_ROOT, 'scripts', 'make_random_checkpoints.py');
    execFileSync('python3', [script, weightsDir, ...missing.flatMap((n) => ['--only', n])], { stdio: 'inherit' });
    made.push(...missing.map((n) => familyWeights[n]));
    console.log(`  made ${missing.join(', ')} in ${((Date.now() - start) / 1000).toFixed(0)} s`);
  }
  return familyWeights;
}
