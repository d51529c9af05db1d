// Random checkpoints of the `tiny` preset (the real SD 1.x names at toy widths) for fast tests,
// drawn by the fixture recipe: 1-D weights 1 + 0.05 n, 1-D biases 0.05 n, embeddings 0.02 n,
// others n / sqrt(fan_in).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { native } from '../lib/native/load';

const CONV_IN = 'model.diffusion_model.input_blocks.0.0.weight';

/** unetInChannels 9: the inpainting layout (input_blocks.0.0.weight [C, 9, 3, 3]; every later draw moves). */
export function randomTensors(preset: 'tiny' | 'sd15' = 'tiny', seed = 1234, unetInChannels = 4): Record<string, sd.Tensor> {
  const g = new sd.Generator(seed);
  const out: Record<string, sd.Tensor> = {};
  for (const [key, presetShape] of native().presetManifest({ preset })) {
    const shape = key === CONV_IN ? [presetShape[0]!, unetInChannels, ...presetShape.slice(2)] : presetShape;
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

const cached = new Map<number, string>();

/** A tiny random checkpoint file (unetInChannels 9: the tiny inpainting one), written once per test run. */
export async function tinyCheckpoint(unetInChannels = 4): Promise<string> {
  const known = cached.get(unetInChannels);
  if (known) return known;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-tiny-'));
  const file = path.join(dir, unetInChannels === 4 ? 'tiny-random.safetensors' : `tiny-random-${unetInChannels}ch.safetensors`);
  await sd.saveTensors(file, randomTensors('tiny', 1234, unetInChannels));
  cached.set(unetInChannels, file);
  return file;
}
