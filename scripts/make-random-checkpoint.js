#!/usr/bin/env node
'use strict';
// Writes a random SD 1.x checkpoint with the real tensor names, by the recipe of
// make_random_sd15.py (same generator, same per-key formula), for any preset the addon knows.
//   node scripts/make-random-checkpoint.js OUT.safetensors [--preset tiny|sd15] [--seed N] [--dtype float16]
const path = require('node:path');
const fs = require('node:fs');

async function makeRandomCheckpoint(out, { preset = 'tiny', seed = 1234, dtype = 'float32' } = {}) {
  const sd = require(path.join(__dirname, '..', 'dist'));
  const { native } = require(path.join(__dirname, '..', 'dist', 'native'));
  const manifest = preset === 'sd15'
    ? Object.entries(JSON.parse(fs.readFileSync(path.join(__dirname, 'sd15_manifest.json'), 'utf8')))
    : native().presetManifest(preset);
  const g = new sd.Generator(seed);
  const tensors = {};
  for (const [key, shape] of manifest) {
    let t = g.randn(shape);
    if (shape.length === 1) t = t.mul(0.05).add(key.endsWith('weight') ? 1 : 0);
    else if (key.includes('embedding')) t = t.mul(0.02);
    else t = t.div(Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
    tensors[key] = dtype === 'float32' ? t : t.to(undefined, dtype);
  }
  // What real files carry besides the model, which loaders must skip.
  tensors['cond_stage_model.transformer.text_model.embeddings.position_ids'] = sd.Tensor.from(BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)), [1, 77]);
  tensors['model_ema.decay'] = sd.Tensor.from(new Float32Array([0.9999]), []);
  await sd.saveTensors(out, tensors, { metadata: { format: 'pt', preset }, overwrite: true });
  return out;
}

module.exports = { makeRandomCheckpoint };

if (require.main === module) {
  const args = process.argv.slice(2);
  const opt = (name, def) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args.splice(i, 2)[1] : def;
  };
  const preset = opt('preset', 'tiny'), seed = Number(opt('seed', '1234')), dtype = opt('dtype', 'float32');
  if (!args[0]) {
    console.error('usage: make-random-checkpoint.js OUT.safetensors [--preset tiny|sd15] [--seed N] [--dtype float32|float16]');
    process.exit(2);
  }
  makeRandomCheckpoint(args[0], { preset, seed, dtype }).then((p) => console.log(p), (e) => { console.error(e.message); process.exit(1); });
}
