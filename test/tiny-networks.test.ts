// Every block at toy widths: the `tiny` preset's CLIP, UNet and VAE against their diffusers and
// transformers twins (scripts/make_tiny_fixture.py), same weights by the fixture recipe.
import assert from 'node:assert/strict';
import path from 'node:path';
import * as sd from '../lib';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';

const relErr = (a: sd.Tensor, b: sd.Tensor) => a.sub(b).norm() / b.norm();

describe('tiny preset networks match diffusers/transformers (fp32 CPU)', function () {
  let ref: Record<string, sd.Tensor>;
  let pipe: sd.Pipeline;
  before(async function () {
    ref = await sd.loadTensors(path.join(repoRoot, 'test', 'fixtures', 'tiny-reference.safetensors'));
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  it('text encoder (embeddings, causal attention, quick GELU MLP, final norm)', async function () {
    const y = await pipe.textEncoder.forward(ref['clip.ids']!);
    assert.deepEqual(y.shape, [2, 77, 32]);
    assert.ok(relErr(y, ref['clip.out']!) < 1e-4);
  });

  for (const name of ['unet', 'unet2']) {
    it(`UNet ${name} (res blocks, spatial transformers, GEGLU, down/up sampling${name === 'unet2' ? ', odd 5x7 latent' : ''})`, async function () {
      const y = await pipe.unet.forward(ref[`${name}.x`]!, ref[`${name}.t`]!, ref[`${name}.ctx`]!);
      assert.deepEqual(y.shape, ref[`${name}.out`]!.shape);
      const e = relErr(y, ref[`${name}.out`]!);
      assert.ok(e < 1e-4, `relative error ${e}`);
    });
  }

  it('VAE encoder (asymmetric-pad downsampling, mid attention, quant_conv, logvar clamp)', async function () {
    const [mean, logvar] = (await pipe.vae.encode(ref['vae.image']!)).chunk(2, 1);
    assert.ok(relErr(mean!, ref['vae.mean']!) < 1e-4);
    assert.ok(relErr(logvar!, ref['vae.logvar']!) < 1e-4);
  });

  it('VAE decoder (post_quant_conv, mid attention, nearest upsampling)', async function () {
    const y = await pipe.vae.decode(ref['vae.z']!);
    assert.deepEqual(y.shape, [1, 3, 16, 24]);
    assert.ok(relErr(y, ref['vae.decoded']!) < 1e-4);
  });
});
