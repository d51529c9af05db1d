// Loading checkpoints by name: what loads, what is refused and how the errors read.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { native } from '../lib/native/load';
import { randomTensors, tinyCheckpoint } from './tiny';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-load-'));
const write = async (name: string, tensors: Record<string, sd.Tensor>) => {
  const file = path.join(tmp, name);
  await sd.saveTensors(file, tensors, { overwrite: true });
  return file;
};
const t = (...shape: number[]) => sd.Tensor.from(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);

describe('loadPipeline', function () {
  it('loads a tiny SD 1.x checkpoint and runs every network', async function () {
    const pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    assert.equal(pipe.model.info().config, 'tiny');
    const ctx = await pipe.textEncoder.forward(pipe.tokenizer.encode(['a cat', 'a dog']));
    assert.deepEqual(ctx.shape, [2, 77, 32]);
    const x = sd.randn([2, 4, 8, 12], new sd.Generator(1));
    const eps = await pipe.unet.forward(x, 500, ctx);
    assert.deepEqual(eps.shape, [2, 4, 8, 12]);
    assert.ok(eps.allFinite());
    const img = await pipe.vae.decode(x);
    assert.deepEqual(img.shape, [2, 3, 16, 24]);
    const m = await pipe.vae.encode(img);
    assert.deepEqual(m.shape, [2, 8, 8, 12]);
    pipe.dispose();
    pipe.dispose();
    await assert.rejects(pipe.unet.forward(x, 500, ctx), /disposed/);
  });

  it('runs forwards concurrently off the JS thread', async function () {
    const pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    const ctx = await pipe.textEncoder.forward(pipe.tokenizer.encode('x'));
    const x = sd.randn([1, 4, 8, 8], new sd.Generator(2));
    const [a, b] = await Promise.all([pipe.unet.forward(x, 10, ctx), pipe.unet.forward(x, 10, ctx)]);
    assert.equal(a.sub(b).norm(), 0);
  });

  it('names a missing tensor', async function () {
    const ts = randomTensors();
    delete ts['model.diffusion_model.out.2.weight'];
    await assert.rejects(sd.loadPipeline(await write('missing.safetensors', ts)), /missing tensor 'model\.diffusion_model\.out\.2\.weight'/);
  });

  it('names a mis-shaped tensor with both shapes', async function () {
    const ts = randomTensors();
    ts['first_stage_model.decoder.conv_out.bias'] = t(4);
    await assert.rejects(
      sd.loadPipeline(await write('misshaped.safetensors', ts)),
      /'first_stage_model\.decoder\.conv_out\.bias' has shape \[4\], expected \[3\]/,
    );
  });

  const lookalikes: Array<[string, Record<string, () => sd.Tensor>, RegExp]> = [
    ['a LoRA', { 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': () => t(4, 320) }, /looks like a LoRA/],
    ['a VAE alone', { 'encoder.conv_in.weight': () => t(128, 3, 3, 3), 'decoder.conv_in.weight': () => t(512, 4, 3, 3) }, /looks like a VAE alone/],
    ['SDXL inpainting', { 'model.diffusion_model.input_blocks.0.0.weight': () => t(320, 9, 3, 3), 'conditioner.embedders.1.model.ln_final.weight': () => t(1280) }, /SDXL inpainting/],
    ['SD 3', { 'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight': () => t(3, 3) }, /Stable Diffusion 3/],
    ['FLUX', { 'double_blocks.0.img_attn.qkv.weight': () => t(3, 3) }, /FLUX/],
    ['a video model', { 'model.diffusion_model.input_blocks.0.0.weight': () => t(320, 8, 3, 3), 'model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight': () => t(320) }, /video model/],
    ['the x4 upscaler', { 'model.diffusion_model.input_blocks.0.0.weight': () => t(256, 7, 3, 3) }, /upscaler/],
    ['junk', { foo: () => t(3) }, /not a Stable Diffusion checkpoint/],
  ];
  for (const [what, entries, message] of lookalikes) {
    it(`says what the file is instead: ${what}`, async function () {
      const ts = Object.fromEntries(Object.entries(entries).map(([k, f]) => [k, f()]));
      const err = await sd.loadPipeline(await write(`${what.replace(/\W/g, '_')}.safetensors`, ts)).then(
        () => assert.fail('loaded'),
        (e: Error) => e,
      );
      assert.match(err.message, message);
      assert.match(err.message, /SD 1\.x, SD 2\.x and SDXL/);
    });
  }

  it('an incomplete SDXL file (the refiner layout: bigG alone) names the first tensor it lacks', async function () {
    const ts = { 'model.diffusion_model.input_blocks.0.0.weight': t(384, 4, 3, 3), 'conditioner.embedders.0.model.ln_final.weight': t(1280) };
    await assert.rejects(sd.loadPipeline(await write('refiner-part.safetensors', ts)), /is missing tensor '.*' of an SDXL refiner checkpoint/);
  });

  // Families sdtorch loads: a fragment of one is named by its family when a tensor is missing.
  const fragments: Array<[string, Record<string, () => sd.Tensor>, RegExp]> = [
    ['SD 2.x (OpenCLIP text encoder)', { 'model.diffusion_model.input_blocks.0.0.weight': () => t(320, 4, 3, 3), 'cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight': () => t(3072, 1024) }, /of an SD 2\.x 768-v checkpoint/],
    ['SD 1.x inpainting', { 'model.diffusion_model.input_blocks.0.0.weight': () => t(320, 9, 3, 3) }, /of an SD 1\.x inpainting checkpoint/],
    ['SD 2.x inpainting', { 'model.diffusion_model.input_blocks.0.0.weight': () => t(320, 9, 3, 3), 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight': () => t(320, 1024) }, /of an SD 2\.x inpainting checkpoint/],
  ];
  for (const [what, entries, message] of fragments) {
    it(`recognises ${what} and names its missing tensors`, async function () {
      const ts = Object.fromEntries(Object.entries(entries).map(([k, f]) => [k, f()]));
      await assert.rejects(sd.loadPipeline(await write(`${what.replace(/\W/g, '_')}.safetensors`, ts)), message);
    });
  }

  // The CLIP layout of older transformers (no `text_model.`), as A1111 maps it.
  const oldClipName = (k: string) => k.replace(/^cond_stage_model\.transformer\.text_model\.(embeddings|encoder|final_layer_norm)\./, 'cond_stage_model.transformer.$1.');

  it('loads the older CLIP key layout (no text_model.): the same text encoder and UNet outputs, bit for bit, and info agrees', async function () {
    const ts = randomTensors();
    const old = Object.fromEntries(Object.entries(ts).map(([k, v]) => [oldClipName(k), v]));
    assert.ok(!Object.keys(old).some((k) => k.includes('text_model')), 'the old layout has no text_model. names');
    assert.ok(Object.keys(old).includes('cond_stage_model.transformer.encoder.layers.0.self_attn.q_proj.weight'));
    const [newFile, oldFile] = [await write('clip-new.safetensors', ts), await write('clip-old.safetensors', old)];
    const [a, b] = [await sd.loadPipeline(newFile, { device: 'cpu' }), await sd.loadPipeline(oldFile, { device: 'cpu' })];
    try {
      const ids = a.tokenizer.encode(['a photo of a cat', 'two dogs']);
      const [ca, cb] = [await a.textEncoder.forward(ids), await b.textEncoder.forward(ids)];
      assert.ok(ca.norm() > 0);
      assert.equal(cb.sub(ca).norm(), 0);
      const x = sd.randn([2, 4, 8, 8], new sd.Generator(3));
      assert.equal((await b.unet.forward(x, 10, cb)).sub(await a.unet.forward(x, 10, ca)).norm(), 0);
    } finally {
      a.dispose();
      b.dispose();
    }
    for (const file of [newFile, oldFile]) assert.equal((await native().inspectFile({ path: file })).family, 'sd1', file);
  });

  it('refuses a file holding one CLIP weight in both layouts, naming both keys', async function () {
    const ts = randomTensors();
    const key = 'cond_stage_model.transformer.text_model.final_layer_norm.weight';
    ts[oldClipName(key)] = ts[key].mul(2);
    await assert.rejects(
      sd.loadPipeline(await write('clip-both.safetensors', ts)),
      /holds both '.*final_layer_norm\.weight' and '.*final_layer_norm\.weight', the same weight 'cond_stage_model\.transformer\.text_model\.final_layer_norm\.weight' in two key layouts/,
    );
  });

  it('rejects a missing file with its path, and the error carries the caller stack', async function () {
    const missing = path.join(tmp, 'nope.safetensors');
    const err: Error = await sd.loadPipeline(missing).then(() => assert.fail('loaded'), (e: Error) => e);
    assert.ok(err instanceof Error);
    assert.ok(err.message.includes(missing));
    assert.match(err.stack ?? '', /loading\.test/);
  });

  it('refuses an unavailable device and an unknown dtype clearly', async function () {
    const file = await tinyCheckpoint();
    await assert.rejects(sd.loadPipeline(file, { device: 'cuda' }), /CUDA is not available/);
    await assert.rejects(sd.loadPipeline(file, { device: 'tpu' }), /unknown device 'tpu'/);
    await assert.rejects(sd.loadPipeline(file, { device: 'cpu', dtype: 'float8' as never }), /unknown dtype 'float8'/);
  });

  it('checks input shapes before running', async function () {
    const pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    const ctx = await pipe.textEncoder.forward(pipe.tokenizer.encode('x'));
    await assert.rejects(pipe.unet.forward(t(1, 3, 8, 8), 1, ctx), /x must have 4 channels/);
    await assert.rejects(pipe.unet.forward(t(2, 4, 8, 8), t(3), ctx.slice(0, 0, 1)), /t must have shape \[B\]/);
    // the tiny VAE downsamples by 2 (its family's vaeScaleFactor; 8 for SD 1.x)
    await assert.rejects(pipe.vae.encode(t(1, 3, 12, 15)), /with H and W multiples of 2/);
    await assert.rejects(pipe.vae.decode(t(1, 3, 2, 2)), /4 channels/);
    await assert.rejects(pipe.unet.forward('x' as never, t(1), ctx), /x must be a Tensor/);
  });
});
