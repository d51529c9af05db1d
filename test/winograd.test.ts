// 3x3 convolutions by Winograd F(4x4, 3x3) (LoadOptions.winograd, native/models/winograd.h) against
// the diffusers/transformers twins of the tiny preset (scripts/make_tiny_fixture.py): every conv with
// channel counts that are multiples of 16 takes it with `winograd: true`, at sizes that leave partial
// 4x4 tiles at the edges. Also: the transformed weights follow a LoRA, and the text encoders' pages,
// handed back before each UNet call, read back the same weights.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { relErrTensor as relErr } from './helpers';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';

describe('Winograd convolutions (float32 CPU)', function () {
  let ref: Record<string, sd.Tensor>;
  let wino: sd.Pipeline;
  let direct: sd.Pipeline;
  before(async function () {
    ref = await sd.loadTensors(path.join(repoRoot, 'test', 'fixtures', 'tiny-reference.safetensors'));
    wino = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', winograd: true });
    direct = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', winograd: false });
  });
  after(() => {
    wino?.dispose();
    direct?.dispose();
  });

  it('info() counts the convolutions that take it: all eligible with true, none with false, none of the tiny ones with auto (< 256 channels)', async function () {
    const { unet, vae } = wino.model.info().winograd;
    assert.ok(unet >= 10 && vae >= 10, `unet ${unet}, vae ${vae}`);
    assert.deepEqual(direct.model.info().winograd, { unet: 0, vae: 0 });
    const auto = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    const unpacked = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', prepack: false, winograd: true });
    try {
      assert.deepEqual(auto.model.info().winograd, { unet: 0, vae: 0 });
      assert.deepEqual(unpacked.model.info().winograd, { unet: 0, vae: 0 }, 'only prepacked layers take it');
    } finally {
      auto.dispose();
      unpacked.dispose();
    }
  });

  for (const name of ['unet', 'unet2']) {
    it(`UNet ${name}${name === 'unet2' ? ' (odd 5x7 latent: partial tiles)' : ''} within 1e-4 of diffusers`, async function () {
      const y = await wino.unet.forward(ref[`${name}.x`]!, ref[`${name}.t`]!, ref[`${name}.ctx`]!);
      const e = relErr(y, ref[`${name}.out`]!);
      assert.ok(e < 1e-4, `relative error ${e}`);
    });
  }

  it('VAE encoder and decoder within 1e-4 of diffusers', async function () {
    const [mean, logvar] = (await wino.vae.encode(ref['vae.image']!)).chunk(2, 1);
    assert.ok(relErr(mean!, ref['vae.mean']!) < 1e-4);
    assert.ok(relErr(logvar!, ref['vae.logvar']!) < 1e-4);
    const e = relErr(await wino.vae.decode(ref['vae.z']!), ref['vae.decoded']!);
    assert.ok(e < 1e-4, `relative error ${e}`);
  });

  it('same latents as the direct convolutions within 1e-4 after 4 sampling steps', async function () {
    const opts = { prompt: 'a cat', steps: 4, width: 24, height: 40, seed: 3, decode: false } as const;
    const a = await wino.generate(opts);
    const b = await direct.generate(opts);
    const e = relErr(a.latents, b.latents);
    assert.ok(e < 1e-4, `relative error ${e}`);
  });

  it('a LoRA on 3x3 convolutions that take Winograd, set after the first call, then removed: the transformed weights follow', async function () {
    const g = new sd.Generator(5);
    const x = g.randn([1, 4, 12, 12]);
    const t = sd.Tensor.from(new Float32Array([400]), [1]);
    const ctx = g.randn([1, 77, 32]);
    const before = await wino.unet.forward(x, t, ctx);
    // kohya LoCon keys for two resnet convs of the tiny UNet (32 and 64 channels: both take Winograd with `true`).
    const lora: Record<string, sd.Tensor> = {};
    for (const [name, ch] of [['lora_unet_down_blocks_0_resnets_0_conv1', 32], ['lora_unet_mid_block_resnets_0_conv1', 64]] as const) {
      lora[`${name}.lora_down.weight`] = g.randn([4, ch, 3, 3]).mul(0.2);
      lora[`${name}.lora_up.weight`] = g.randn([ch, 4, 1, 1]).mul(0.2);
      lora[`${name}.alpha`] = sd.Tensor.from(new Float32Array([4]), []);
    }
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-winograd-')), 'conv3x3.safetensors');
    await sd.saveTensors(file, lora);
    const set = [{ path: file, weight: 0.7 }];
    await sd.setLoras(wino.model, set);
    await sd.setLoras(direct.model, set);
    try {
      const withLora = await wino.unet.forward(x, t, ctx);
      assert.ok(relErr(withLora, before) > 1e-2, 'the LoRA changed nothing: stale transformed weights');
      const e = relErr(withLora, await direct.unet.forward(x, t, ctx));
      assert.ok(e < 1e-4, `relative error ${e} against the direct convolutions with the same LoRA`);
    } finally {
      await sd.setLoras(wino.model, []);
      await sd.setLoras(direct.model, []);
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
    // The other prepacked layers are repacked for this call's size, not the first call's: ~1e-6.
    const back = relErr(await wino.unet.forward(x, t, ctx), before);
    assert.ok(back < 1e-5, `relative error ${back} after the LoRA went`);
  });

  it('the text encoder gives the same output after a UNet call handed its pages back, with and without a LoRA on it', async function () {
    const encodeTwice = async () => {
      const first = await direct.textEncoder.forward(ref['clip.ids']!);
      await direct.unet.forward(ref['unet.x']!, ref['unet.t']!, ref['unet.ctx']!);
      return [first, await direct.textEncoder.forward(ref['clip.ids']!)] as const;
    };
    const [first, again] = await encodeTwice();
    assert.deepEqual(again.toArray(), first.toArray());
    assert.ok(relErr(again, ref['clip.out']!) < 1e-4);
    // The LoHa changes layer 0's q_proj: a merged copy, which must not be handed back (it is no map's).
    await sd.setLoras(direct.model, [{ path: path.join(repoRoot, 'test', 'fixtures', 'lora', 'tiny-loha.safetensors'), weight: 1 }]);
    try {
      const [withLora, withLoraAgain] = await encodeTwice();
      assert.ok(relErr(withLora, first) > 1e-4, 'the LoRA changed nothing in the text encoder');
      assert.deepEqual(withLoraAgain.toArray(), withLora.toArray());
    } finally {
      await sd.setLoras(direct.model, []);
    }
    const [restored] = await encodeTwice();
    assert.deepEqual(restored.toArray(), first.toArray());
  });

  it("winograd must be true, false or 'auto'", async function () {
    await assert.rejects(sd.loadPipeline(await tinyCheckpoint(), { winograd: 'yes' as unknown as boolean }), /winograd must be true, false or 'auto', got 'yes'/);
  });
});
