// SDXL at full size (issue #15): random fp16 files in the layouts of sd_xl_base_1.0 and
// sd_xl_refiner_1.0 (scripts/make_random_checkpoints.py --only sdxl / sdxl-refiner), computed in fp32
// on CPU, against what diffusers' from_single_file computes from the same files
// (test/fixtures/sdxl-reference.*, scripts/make_sdxl_reference.py --part base / refiner).
// One model in memory at a time: the base in fp32 is ~14 GB.
import assert from 'node:assert/strict';
import * as sd from '../lib';
import { fixture, relErrTensor as relErr } from './helpers';
import { componentTests, SdxlReference } from './sdxl-reference';
import { ensureFamilyWeights, familyWeights } from './weights';

const reference = new SdxlReference('sdxl-reference');

describe('SDXL base, full size: parity with diffusers from_single_file (fp32 CPU)', function () {
  this.timeout(1_800_000);
  let pipe: sd.Pipeline;
  before(async function () {
    ensureFamilyWeights('sdxl');
    pipe = await sd.loadPipeline(familyWeights.sdxl, { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  it('is detected as SDXL: two encoders (CLIP ViT-L, OpenCLIP bigG with projection), 1024x1024, scale 0.13025', function () {
    assert.equal(pipe.family.name, 'sdxl');
    assert.deepEqual(pipe.family.textEncoders.map((e) => [e.width, e.layers, e.padToken, e.projection]), [[768, 11, 49407, 0], [1280, 31, 0, 1280]]);
    assert.equal(pipe.family.contextDim, 2048);
    assert.equal(pipe.family.defaultSize, 1024);
    assert.equal(pipe.family.latentScale, 0.13025);
  });

  componentTests(reference, 'base', () => pipe);

  for (const key of ['txt2img.euler', 'txt2img.euler_a.zero_negative', 'txt2img.dpmpp_2m.microcond']) {
    it(`${key}: final latents within 1e-3`, async function () {
      await reference.sameLatents(pipe, key);
    });
  }

  it('img2img.euler.s060: final latents within 1e-3', async function () {
    await reference.sameLatents(pipe, 'img2img.euler.s060', { image: fixture('img2img-init.png') });
  });

  it('a kohya SDXL LoRA (sgm block names, lora_te1_, lora_te2_): final latents within 1e-3', async function () {
    await reference.sameLatents(pipe, 'lora.txt2img.euler', { loras: [{ path: fixture('lora', 'sdxl-kohya.safetensors'), weight: 1 }] });
  });

  it('the hand-off latents: the base run to denoisingEnd 0.8 within 1e-3', async function () {
    handoff = await reference.sameLatents(pipe, 'handoff.base');
  });
});

let handoff: sd.Tensor | undefined;

describe('SDXL refiner, full size: parity with diffusers from_single_file (fp32 CPU)', function () {
  this.timeout(1_800_000);
  let pipe: sd.Pipeline;
  before(async function () {
    ensureFamilyWeights('sdxl-refiner');
    pipe = await sd.loadPipeline(familyWeights['sdxl-refiner'], { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  it('is detected as the refiner: bigG alone, aesthetic-score conditioning', function () {
    assert.equal(pipe.family.name, 'sdxl-refiner');
    assert.deepEqual(pipe.family.timeIds, ['original_size', 'crop_coords_top_left', 'aesthetic_score']);
    assert.equal(pipe.family.contextDim, 1280);
  });

  componentTests(reference, 'refiner', () => pipe);

  it('the refiner finishes the base run from denoisingStart 0.8: final latents within 1e-3', async function () {
    const start = handoff ?? (await reference.get('handoff.base'));
    const r = await pipe.generate({ ...reference.options('handoff.refined'), initLatents: start });
    const e = relErr(r.latents, await reference.get('handoff.refined'));
    assert.ok(e < 1e-3, `relative error ${e}`);
  });
});
