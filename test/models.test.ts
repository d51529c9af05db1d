// Parity of the three networks with diffusers/transformers on the random SD 1.5 checkpoint
// (test/fixtures/reference-1234.safetensors), fp32 on CPU.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import { relErrTensor as relErr } from './helpers';
import { ensureWeights, repoRoot } from './weights';

const fixture = path.join(repoRoot, 'test', 'fixtures', 'reference-1234.safetensors');

describe('SD 1.5 networks match the reference (random weights, fp32 CPU)', function () {
  let ref: Record<string, sd.Tensor>;
  let pipe: sd.Pipeline;
  const out: Record<string, sd.Tensor> = {};

  before(async function () {
    const w = ensureWeights();
    ref = await sd.loadTensors(fixture);
    pipe = await sd.loadPipeline(w.safetensors, { device: 'cpu', dtype: 'float32' });
  });
  after(() => pipe?.dispose());

  it('tokenizer ids equal CLIPTokenizer for every reference prompt', function () {
    const prompts: string[] = JSON.parse(fs.readFileSync(path.join(repoRoot, 'test', 'fixtures', 'prompts.json'), 'utf8'));
    const ids = pipe.tokenizer.encode(prompts);
    assert.deepEqual(ids.shape, [prompts.length, 77]);
    assert.equal(ids.dtype, 'int64');
    assert.deepEqual(Array.from(ids.toArray() as BigInt64Array), Array.from(ref['tokenizer.ids']!.toArray() as BigInt64Array));
  });

  it('text encoder: last hidden state within 1e-4', async function () {
    out.text = await pipe.textEncoder.forward(ref['tokenizer.ids']!.slice(0, 0, 4));
    assert.deepEqual(out.text.shape, [4, 77, 768]);
    assert.ok(relErr(out.text, ref['text_encoder.out']!) < 1e-4);
  });

  it("these outputs come from Winograd's convolutions where 'auto' puts them: the UNet's 320/640-channel ones, the VAE's above its deepest level", function () {
    // Listed from the file's keys by the rule (stride-1 3x3, >= 256 channels, weight <= 15 MB; the VAE's
    // levels 0-2 and the deepest upsample conv): UNet input_blocks 1, 2, 4, 5 (both convs), output_blocks
    // 6-8 (out_layers), 8.2 (upsample), 9-11 (both); VAE decoder.up.1, up.2 (blocks and upsample),
    // up.3.upsample, encoder.down.1 (3 convs, not the 128 -> 256 one), down.2 (4).
    assert.deepEqual(pipe.model.info().winograd, { unet: 18, vae: 22 });
  });

  it('UNet, batch 2 at 8x8: within 1e-4', async function () {
    out.unet = await pipe.unet.forward(ref['unet.x']!, ref['unet.t']!, ref['unet.ctx']!);
    assert.deepEqual(out.unet.shape, [2, 4, 8, 8]);
    const e = relErr(out.unet, ref['unet.out']!);
    assert.ok(e < 1e-4, `relative error ${e}`);
  });

  it('UNet, non-square 8x12 latent (odd sizes on the way down): within 1e-4', async function () {
    const y = await pipe.unet.forward(ref['unet2.x']!, ref['unet2.t']!, ref['unet2.ctx']!);
    assert.deepEqual(y.shape, [1, 4, 8, 12]);
    const e = relErr(y, ref['unet2.out']!);
    assert.ok(e < 1e-4, `relative error ${e}`);
  });

  it('VAE encode: mean and clamped logvar within 1e-4', async function () {
    const m = await pipe.vae.encode(ref['vae.image']!);
    assert.deepEqual(m.shape, [1, 8, 8, 12]);
    const [mean, logvar] = m.chunk(2, 1);
    assert.ok(relErr(mean!, ref['vae.mean']!) < 1e-4);
    assert.ok(relErr(logvar!, ref['vae.logvar']!) < 1e-4);
  });

  it('VAE decode: within 1e-4', async function () {
    out.decoded = await pipe.vae.decode(ref['vae.z']!);
    assert.deepEqual(out.decoded.shape, [1, 3, 64, 96]);
    const e = relErr(out.decoded, ref['vae.decoded']!);
    assert.ok(e < 1e-4, `relative error ${e}`);
  });

  /** The reference inputs through the three networks of `file`, computed in fp32. */
  async function outputsOf(file: string) {
    const p = await sd.loadPipeline(file, { device: 'cpu', dtype: 'float32' });
    try {
      return {
        unet: await p.unet.forward(ref['unet.x']!, ref['unet.t']!, ref['unet.ctx']!),
        text: await p.textEncoder.forward(ref['tokenizer.ids']!.slice(0, 0, 4)),
        decoded: await p.vae.decode(ref['vae.z']!),
      };
    } finally {
      p.dispose();
    }
  }

  it('the same weights from .ckpt give identical outputs', async function () {
    const ckpt = await outputsOf(ensureWeights().ckpt);
    assert.equal(relErr(ckpt.unet, out.unet!), 0);
    assert.equal(relErr(ckpt.text, out.text!), 0);
    assert.equal(relErr(ckpt.decoded, out.decoded!), 0);
  });

  it('the fp16 file, computed in fp32, is within 2e-2', async function () {
    const half = await outputsOf(ensureWeights().fp16);
    assert.ok(relErr(half.unet, ref['unet.out']!) < 2e-2);
    assert.ok(relErr(half.text, ref['text_encoder.out']!) < 2e-2);
    assert.ok(relErr(half.decoded, ref['vae.decoded']!) < 2e-2);
  });

  it('bfloat16 compute on CPU runs and stays near the reference', async function () {
    const bf = await sd.loadPipeline(ensureWeights().safetensors, { device: 'cpu', dtype: 'bfloat16' });
    try {
      const y = await bf.unet.forward(ref['unet.x']!, ref['unet.t']!, ref['unet.ctx']!);
      assert.equal(y.dtype, 'bfloat16');
      assert.ok(relErr(y.to(undefined, 'float32'), ref['unet.out']!) < 5e-2);
    } finally {
      bf.dispose();
    }
  });
});
