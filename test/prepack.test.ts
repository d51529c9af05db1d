// float32 CPU convolutions and linear layers on oneDNN-prepacked weights (LoadOptions.prepack,
// native/models/layers.h) give what the plain layers give, and the packed copies follow every change
// of the weights: a LoRA set and removed, a move to another dtype and back.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { REPO_ROOT, relErrTensor } from './helpers';
import { randomTensors, tinyCheckpoint } from './tiny';

const lora = (name: string) => path.join(REPO_ROOT, 'test', 'fixtures', 'lora', name);

describe('prepacked convolutions and linear layers (float32 CPU)', function () {
  let packed: sd.Pipeline;
  let plain: sd.Pipeline;
  const g = new sd.Generator(7);
  const x = g.randn([2, 4, 16, 24]);
  const context = g.randn([2, 77, 32]);
  const t = sd.Tensor.from(new Float32Array([999, 321]), [2]);
  const z = g.randn([1, 4, 8, 8]);
  const unetOf = (p: sd.Pipeline) => p.unet.forward(x, t, context);

  before(async function () {
    const file = await tinyCheckpoint();
    packed = await sd.loadPipeline(file, { device: 'cpu' });
    plain = await sd.loadPipeline(file, { device: 'cpu', prepack: false });
  });
  after(() => {
    packed?.dispose();
    plain?.dispose();
  });

  it('UNet and VAE outputs within 1e-5 of the plain layers, at two sizes', async function () {
    assert.ok(relErrTensor(await unetOf(packed), await unetOf(plain)) < 1e-5);
    const small = g.randn([2, 4, 8, 8]);
    const e = relErrTensor(await packed.unet.forward(small, t, context), await plain.unet.forward(small, t, context));
    assert.ok(e < 1e-5, `relative error ${e} at another size than the one packed for`);
    assert.ok(relErrTensor(await packed.vae.decode(z), await plain.vae.decode(z)) < 1e-5);
    const img = g.randn([1, 3, 32, 32]).mul(0.5);
    assert.ok(relErrTensor(await packed.vae.encode(img), await plain.vae.encode(img)) < 1e-5);
  });

  // The LoCon changes two convolutions (proj_in, out.2); the other LoRA only attn1.to_q, a linear layer
  // (the LoHa fixture's keys for it).
  for (const [what, make] of [
    ['on the convolutions (LoCon)', async () => lora('tiny-locon-tucker.safetensors')],
    ['on a linear layer only (attn1.to_q)', async () => {
      const all = await sd.loadTensors(lora('tiny-loha.safetensors'));
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-prepack-')), 'to_q.safetensors');
      await sd.saveTensors(file, Object.fromEntries(Object.entries(all).filter(([k]) => k.includes('attn1_to_q'))));
      return file;
    }],
  ] as const) {
    it(`a LoRA ${what} set after the first call, then removed: the packed copies follow`, async function () {
      const before = await unetOf(packed); // packs the base weights
      const set = [{ path: await make(), weight: -0.5 }];
      await sd.setLoras(packed.model, set);
      await sd.setLoras(plain.model, set);
      try {
        const withLora = await unetOf(packed);
        assert.ok(relErrTensor(withLora, before) > 1e-4, 'the LoRA changed nothing: stale packed weights');
        assert.ok(relErrTensor(withLora, await unetOf(plain)) < 1e-5);
      } finally {
        await sd.setLoras(packed.model, []);
        await sd.setLoras(plain.model, []);
      }
      assert.ok(relErrTensor(await unetOf(packed), before) < 1e-6);
    });
  }

  it('a move to bfloat16 and back: the packed copies are remade from the rounded weights', async function () {
    const exact = await unetOf(packed);
    for (const p of [packed, plain]) {
      await p.model.moveTo({ component: 'unet', device: 'cpu', dtype: 'bfloat16' });
      await p.model.moveTo({ component: 'unet', device: 'cpu', dtype: 'float32' });
    }
    const rounded = await unetOf(packed);
    assert.ok(relErrTensor(rounded, exact) > 1e-4, 'bfloat16 rounding left no trace: stale packed weights');
    assert.ok(relErrTensor(rounded, await unetOf(plain)) < 1e-5);
  });

  it("'auto' packs the UNet from an fp32 file (the copies replace the map's pages), not from an fp16 one (they would come on top)", async function () {
    assert.deepEqual(packed.model.info().prepacked, { unet: true, vae: true });
    assert.deepEqual(plain.model.info().prepacked, { unet: false, vae: false });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-prepack-'));
    try {
      const half = path.join(dir, 'tiny.fp16.safetensors');
      await sd.saveTensors(half, Object.fromEntries(Object.entries(randomTensors()).map(([k, t]) => [k, t.dtype === 'float32' ? t.to('cpu', 'float16') : t])));
      const outputs: sd.Tensor[] = [];
      for (const [prepack, want] of [[undefined, { unet: false, vae: true }], [true, { unet: true, vae: true }], [false, { unet: false, vae: false }]] as const) {
        const p = await sd.loadPipeline(half, { device: 'cpu', ...(prepack === undefined ? {} : { prepack }) });
        try {
          assert.deepEqual(p.model.info().prepacked, want, `prepack ${String(prepack)}`);
          outputs.push(await unetOf(p));
        } finally {
          p.dispose();
        }
      }
      assert.ok(relErrTensor(outputs[1]!, outputs[2]!) < 1e-5, 'prepack: true on converted weights');
      const bf = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', dtype: 'bfloat16' });
      assert.deepEqual(bf.model.info().prepacked, { unet: false, vae: false }, 'float32 only');
      bf.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("prepack must be true, false or 'auto'", async function () {
    await assert.rejects(sd.loadPipeline(await tinyCheckpoint(), { prepack: 'yes' as unknown as boolean }), /prepack must be true, false or 'auto', got 'yes'/);
  });
});
