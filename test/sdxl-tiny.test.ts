// SDXL on the tiny SDXL presets (issue #15): the base and refiner structures at toy widths, drawn by
// the fixture recipe, against diffusers' StableDiffusionXLPipeline / Img2Img and its twins of these
// networks (test/fixtures/tiny-sdxl-reference.*, scripts/make_sdxl_reference.py --part tiny): every
// component, three samplers, micro-conditioning, the zeroed empty negative, img2img, the refiner
// hand-off, a kohya SDXL LoRA and an SDXL (clip_l + clip_g) embedding.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import { native } from '../lib/native/load';
import { fixture, relErrTensor as relErr, tmpDir } from './helpers';
import { componentTests, SdxlReference } from './sdxl-reference';

const reference = new SdxlReference('tiny-sdxl-reference');

/** The fixture recipe (test/tiny.ts) over a manifest JSON, in its order, seed 1234. */
function drawManifest(manifest: Record<string, number[]>, seed = 1234): Record<string, sd.Tensor> {
  const g = new sd.Generator(seed);
  const out: Record<string, sd.Tensor> = {};
  for (const [key, shape] of Object.entries(manifest)) {
    const n = g.randn(shape);
    if (shape.length === 1) out[key] = n.mul(0.05).add(key.endsWith('weight') ? 1 : 0);
    else if (key.includes('embedding')) out[key] = n.mul(0.02);
    else out[key] = n.div(Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
  }
  return out;
}

const manifest = (preset: string): Record<string, number[]> => JSON.parse(fs.readFileSync(fixture(`${preset}-manifest.json`), 'utf8'));

describe('SDXL, tiny presets: parity with diffusers (fp32 CPU)', function () {
  this.timeout(120_000);
  const tmp = tmpDir('sdtorch-tiny-sdxl-');
  const files: Record<string, string> = {};
  let base: sd.Pipeline;
  let refiner: sd.Pipeline;
  before(async function () {
    for (const preset of ['tiny-sdxl', 'tiny-sdxl-refiner']) {
      files[preset] = path.join(tmp.dir, `${preset}.safetensors`);
      await sd.saveTensors(files[preset]!, drawManifest(manifest(preset)));
    }
    base = await sd.loadPipeline(files['tiny-sdxl']!, { device: 'cpu' });
    refiner = await sd.loadPipeline(files['tiny-sdxl-refiner']!, { device: 'cpu' });
  });
  after(() => {
    base?.dispose();
    refiner?.dispose();
    tmp.cleanup();
  });

  it('the presets are the manifests: every tensor name and shape', function () {
    for (const preset of ['tiny-sdxl', 'tiny-sdxl-refiner']) {
      const ours = Object.fromEntries(native().presetManifest({ preset }).map(([k, s]) => [k, s]));
      assert.deepEqual(ours, manifest(preset), preset);
    }
  });

  it('detection: base and refiner rows, their conditioning and defaults', function () {
    assert.equal(base.family.name, 'tiny-sdxl');
    assert.deepEqual(base.family.timeIds, ['original_size', 'crop_coords_top_left', 'target_size']);
    assert.deepEqual(base.family.textEncoders.map((e) => [e.width, e.padToken, e.projection]), [[32, 49407, 0], [40, 0, 40]]);
    assert.equal(base.family.contextDim, 72);
    assert.equal(base.family.latentScale, 0.13025);
    assert.equal(base.family.zeroEmptyNegative, true);
    assert.equal(base.family.timestepSpacing, 'leading');
    assert.equal(refiner.family.name, 'tiny-sdxl-refiner');
    assert.deepEqual(refiner.family.timeIds, ['original_size', 'crop_coords_top_left', 'aesthetic_score']);
    assert.equal(refiner.family.zeroEmptyNegative, false);
    assert.equal(refiner.textEncoders.length, 1);
  });

  describe('base components', () => componentTests(reference, 'tiny', () => base));
  describe('refiner components', () => componentTests(reference, 'tiny_refiner', () => refiner));

  for (const key of ['txt2img.euler', 'txt2img.euler_a.zero_negative', 'txt2img.dpmpp_2m.microcond']) {
    it(`${key}: final latents within 1e-3`, async function () {
      await reference.sameLatents(base, key);
    });
  }

  it('img2img.euler.s060 (the image at its own size, strength 0.6): final latents within 1e-3', async function () {
    await reference.sameLatents(base, 'img2img.euler.s060', { image: fixture('img2img-init.png') });
  });

  it('the refiner hand-off: the base to denoisingEnd 0.8, the refiner from denoisingStart 0.8 (aesthetic scores 6 / 2.5)', async function () {
    const latents = await reference.sameLatents(base, 'handoff.base');
    await reference.sameLatents(refiner, 'handoff.refined', { initLatents: latents });
    // generate({ refiner }) runs the same two stages in one call.
    const one = await base.generate({ ...reference.options('handoff.base'), denoisingEnd: undefined, refiner: { pipeline: refiner, switchAt: 0.8 } });
    const e = relErr(one.latents, await reference.get('handoff.refined'));
    assert.ok(e < 1e-3, `generate({ refiner }): relative error ${e}`);
  });

  it('a kohya SDXL LoRA (lora_unet_ with LDM names, lora_te1_, lora_te2_) at weight 1: final latents within 1e-3', async function () {
    await reference.sameLatents(base, 'lora.txt2img.euler', { loras: [{ path: fixture('lora', 'tiny-sdxl-kohya.safetensors'), weight: 1 }] });
    // the next job without it is the base model again
    await reference.sameLatents(base, 'txt2img.euler');
  });

  it('an SDXL embedding (clip_l and clip_g vectors, each into its encoder): final latents within 1e-3', async function () {
    await reference.sameLatents(base, 'ti.txt2img.euler', { embeddingDirs: [fixture('embeddings')] });
  });
});

describe('SDXL diffusers folders load as the single file they came from (tiny presets)', function () {
  // test/fixtures/diffusers-tiny-sdxl{,-refiner}/ (scripts/make_diffusers_tiny.py --only sdxl): the presets'
  // weights in float16, as StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline.save_pretrained writes
  // them. Compared with the same single files cast likewise.
  this.timeout(120_000);
  const tmp = tmpDir('sdtorch-tiny-sdxl-folders-');
  const singles: Record<string, sd.Pipeline> = {};
  before(async function () {
    for (const preset of ['tiny-sdxl', 'tiny-sdxl-refiner']) {
      const half = Object.fromEntries(Object.entries(drawManifest(manifest(preset))).map(([k, t]) => [k, t.to('cpu', 'float16')]));
      const file = path.join(tmp.dir, `${preset}.fp16.safetensors`);
      await sd.saveTensors(file, half);
      singles[preset] = await sd.loadPipeline(file, { device: 'cpu' });
    }
  });
  after(() => {
    for (const p of Object.values(singles)) p.dispose();
    tmp.cleanup();
  });

  for (const [folder, preset] of [['diffusers-tiny-sdxl', 'tiny-sdxl'], ['diffusers-tiny-sdxl-refiner', 'tiny-sdxl-refiner']] as const) {
    it(`${folder}: the ${preset} family, bit-identical weights and the same latents`, async function () {
      const single = singles[preset]!;
      const pipe = await sd.loadPipeline(fixture(folder), { device: 'cpu' });
      try {
        assert.equal(pipe.family.name, preset);
        // the same family row, but for the default size: the folder states its own (unet sample_size 32 x the tiny VAE's 2)
        assert.deepEqual({ ...pipe.family, defaultSize: 0 }, { ...single.family, defaultSize: 0 });
        assert.equal(pipe.family.defaultSize, 64);
        for (const component of ['textEncoder', 'unet', 'vae'] as const) {
          const want = new Map(await single.model.parameters({ component }));
          const got = await pipe.model.parameters({ component });
          assert.ok(got.length > 0, component);
          assert.deepEqual(got.map(([k]) => k).sort(), [...want.keys()].sort(), component);
          for (const [k, t] of got) {
            const w = new sd.Tensor(want.get(k)!);
            assert.deepEqual(t.shape, w.shape, k);
            assert.equal(new sd.Tensor(t).sub(w).norm(), 0, k);
          }
        }
        const job = { prompt: 'a photo of a cat', negativePrompt: 'blurry', width: 32, height: 32, steps: 3, seed: 5, decode: false } as const;
        const [a, b] = [await pipe.generate(job), await single.generate(job)];
        assert.equal(relErr(a.latents, b.latents), 0);
      } finally {
        pipe.dispose();
      }
    });
  }
});
