// Every block at toy widths: the `tiny` preset's CLIP, UNet and VAE against their diffusers and
// transformers twins (scripts/make_tiny_fixture.py), same weights by the fixture recipe.
import assert from 'node:assert/strict';
import path from 'node:path';
import * as sd from '../lib';
import { relErrTensor as relErr } from './helpers';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';


// Shared by the two suites below: the reference and the tiny model, loaded once.
let ref: Record<string, sd.Tensor>;
let pipe: sd.Pipeline;
before(async function () {
  ref = await sd.loadTensors(path.join(repoRoot, 'test', 'fixtures', 'tiny-reference.safetensors'));
  pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
});
after(() => pipe?.dispose());

describe('tiny preset networks match diffusers/transformers (fp32 CPU)', function () {

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

describe('tiled VAE (tiny preset) matches diffusers enable_tiling()', function () {

  it('tiled decode of a 20x28 latent in 8-cell tiles (15 tiles, blended overlaps)', async function () {
    const y = await pipe.vae.decode(ref['vae_tiled.z']!, { tile: 8 });
    assert.deepEqual(y.shape, [1, 3, 40, 56]);
    const e = relErr(y, ref['vae_tiled.decoded']!);
    assert.ok(e < 1e-4, `relative error ${e}`);
  });

  it('tiled encode of a 40x56 image in 16-pixel tiles', async function () {
    const [mean, logvar] = (await pipe.vae.encode(ref['vae_tiled.image']!, { tile: 16 })).chunk(2, 1);
    assert.ok(relErr(mean!, ref['vae_tiled.mean']!) < 1e-4);
    assert.ok(relErr(logvar!, ref['vae_tiled.logvar']!) < 1e-4);
  });

  it('an input that fits one tile is decoded whole, exactly as untiled', async function () {
    const z = ref['vae_tiled.z']!.slice(2, 0, 8).slice(3, 0, 8);
    const tiled = await pipe.vae.decode(z, { tile: 8 });
    const whole = await pipe.vae.decode(z);
    assert.equal(tiled.sub(whole).norm(), 0);
    assert.ok(relErr(whole, ref['vae_tiled.untiled']!) < 1e-4);
  });

  it('tiling is seam-free: no jump at tile borders beyond the image\'s own pixel-to-pixel variation', async function () {
    const y = (await pipe.vae.decode(ref['vae_tiled.z']!, { tile: 8 })).toArray() as Float32Array; // [1,3,40,56]
    const H = 40, W = 56;
    const colJump = (x: number) => {
      let s = 0;
      for (let c = 0; c < 3; c++) for (let r = 0; r < H; r++) s += Math.abs(y[(c * H + r) * W + x]! - y[(c * H + r) * W + x - 1]!);
      return s / (3 * H);
    };
    const all = Array.from({ length: W - 1 }, (_, i) => colJump(i + 1));
    const typical = all.reduce((a, b) => a + b, 0) / all.length;
    for (const border of [12, 24, 36, 48]) assert.ok(colJump(border) < 2 * typical, `column ${border}: ${colJump(border)} vs ${typical}`);
  });
});

describe('fp16 VAE overflow is recovered in fp32', function () {
  it('a decode that overflows fp16 (inf/NaN) is redone in fp32 and the VAE stays fp32', async function () {
    const pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', dtype: 'float16' });
    const z = sd.randn([1, 4, 8, 8], new sd.Generator(3)).mul(5e4); // far beyond fp16's 65504 after the convs
    const raw = await pipe.vae.decode(z.div(sd.LATENT_SCALE));
    assert.equal(raw.allFinite(), false, 'the test needs an fp16 overflow to begin with');
    const images = await pipe.decode(z);
    assert.ok(images.allFinite());
    assert.equal(pipe.model.info().vaeDtype, 'float32');
    const fp32 = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', dtype: 'float32' });
    // The weights went through fp16 once, so they differ from the fp32 file's in the 4th digit.
    assert.ok(relErr(images.to(undefined, 'float32'), await fp32.vae.decode(z.div(sd.LATENT_SCALE))) < 1e-2);
  });
});
