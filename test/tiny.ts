// Random checkpoints of the `tiny` preset (the real SD 1.x names at toy widths) for fast tests,
// drawn by the fixture recipe: 1-D weights 1 + 0.05 n, 1-D biases 0.05 n, embeddings 0.02 n,
// others n / sqrt(fan_in).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { native } from '../lib/native/load';

export function randomTensors(preset: 'tiny' | 'sd15' = 'tiny', seed = 1234, shapes: Record<string, number[]> = {}): Record<string, sd.Tensor> {
  const g = new sd.Generator(seed);
  const out: Record<string, sd.Tensor> = {};
  for (const [key, presetShape] of native().presetManifest({ preset })) {
    const shape = shapes[key] ?? presetShape;
    const n = g.randn(shape);
    if (shape.length === 1) out[key] = n.mul(0.05).add(key.endsWith('weight') ? 1 : 0);
    else if (key.includes('embedding')) out[key] = n.mul(0.02);
    else out[key] = n.div(Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
  }
  // What real files carry besides the model, which loaders must skip.
  out['cond_stage_model.transformer.text_model.embeddings.position_ids'] = sd.Tensor.from(BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)), [1, 77]);
  out['model_ema.decay'] = sd.Tensor.from(new Float32Array([0.9999]), []);
  return out;
}

let cached: string | undefined;
let cachedInpaint: string | undefined;

/**
 * A tiny random inpainting checkpoint: the same recipe with a 9-channel UNet input
 * (input_blocks.0.0.weight [32, 9, 3, 3]: latents, mask, masked-image latents), written once per run.
 */
export async function tinyInpaintCheckpoint(): Promise<string> {
  if (cachedInpaint) return cachedInpaint;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-tiny-inpaint-'));
  const file = path.join(dir, 'tiny-inpaint-random.safetensors');
  await sd.saveTensors(file, randomTensors('tiny', 1234, { 'model.diffusion_model.input_blocks.0.0.weight': [32, 9, 3, 3] }));
  return (cachedInpaint = file);
}

/** A tiny random checkpoint file, written once per test run. */
export async function tinyCheckpoint(): Promise<string> {
  if (cached) return cached;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-tiny-'));
  const file = path.join(dir, 'tiny-random.safetensors');
  await sd.saveTensors(file, randomTensors());
  return (cached = file);
}
