// TAESD, the tiny autoencoder: parity with diffusers' AutoencoderTiny on random weights in both key
// layouts (scripts/make_taesd_fixture.py), decoder 'taesd' against diffusers' pipeline with a TAESD
// as its VAE, live previews (TAESD, and A1111's cheap approximation checked against its published
// factors), the service's previews, and the refusals.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import * as sd from '../lib';
import { toImageData } from '../lib/image/io';
import { cheapPreview } from '../lib/generate/preview';
import { native } from '../lib/native/load';
import { JobControl, type JobProgress, type JobSpec } from '../lib/server/job';
import { ModelStore } from '../lib/server/models';
import { Runner } from '../lib/server/runner';
import { fixture, relErrTensor as relErr, tmpDir } from './helpers';
import { tinyCheckpoint } from './tiny';

const published = (folder: string) => [fixture(folder, 'taesd_decoder.safetensors'), fixture(folder, 'taesd_encoder.safetensors')];
const SD = published('taesd');
const TINY = published('tiny-taesd');
const TINY_DIFFUSERS = fixture('tiny-taesd-diffusers', 'diffusion_pytorch_model.safetensors');

/** A1111's cheap_approximation factors (modules/sd_vae_approx.py): latent channel -> R, G, B. */
const A1111_SD = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];
const A1111_SDXL = [[0.3448, 0.4168, 0.4395], [-0.1953, -0.029, 0.025], [0.1074, 0.0886, -0.0163], [-0.373, -0.2499, -0.2088]];

/** A1111's preview of one latent image [4, h, w] (values CHW): clamp((x·F + 1) / 2, 0, 1)·255, astype(uint8); HWC. */
function a1111Cheap(x: Float32Array, h: number, w: number, factors: number[][]): Uint8Array {
  const out = new Uint8Array(h * w * 3);
  for (let p = 0; p < h * w; p++)
    for (let c = 0; c < 3; c++) {
      const v = factors.reduce((sum, f, l) => sum + x[l * h * w + p]! * f[c]!, 0);
      out[p * 3 + c] = Math.floor(Math.min(Math.max((v + 1) / 2, 0), 1) * 255);
    }
  return out;
}

const maxDiff = (a: Uint8Array, b: Uint8Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

let ref: Record<string, sd.Tensor>;
before(async function () {
  ref = await sd.loadTensors(fixture('taesd-reference.safetensors'));
});

describe('TAESD equals diffusers AutoencoderTiny (random weights, fp32 CPU)', function () {
  const cases = [
    { name: 'sd', files: SD, scale: 8, what: 'the published structure (8x, 64 wide, 4 levels), published key layout' },
    { name: 'tiny', files: TINY, scale: 2, what: 'the tiny structure, published key layout' },
    { name: 'tiny', files: [TINY_DIFFUSERS], scale: 2, what: "the tiny structure, diffusers' AutoencoderTiny key layout (one file)" },
  ];
  for (const c of cases) {
    it(`${c.what}: decode and encode within 1e-4`, async function () {
      const tae = await sd.loadTaesd(c.files);
      try {
        assert.deepEqual({ ...tae.info }, { encoder: true, decoder: true, latentChannels: 4, scale: c.scale, device: 'cpu', dtype: 'float32' });
        const latents = ref[`${c.name}.latents`]!;
        const decoded = await tae.decode(latents);
        assert.deepEqual(decoded.shape, [2, 3, latents.shape[2]! * c.scale, latents.shape[3]! * c.scale]);
        const de = relErr(decoded, ref[`${c.name}.decoded`]!);
        assert.ok(de < 1e-4, `decode: relative error ${de}`);
        const encoded = await tae.encode(ref[`${c.name}.images`]!);
        const ee = relErr(encoded, ref[`${c.name}.encoded`]!);
        assert.ok(ee < 1e-4, `encode: relative error ${ee}`);
      } finally {
        tae.dispose();
      }
    });
  }

  it('a half alone: the decoder decodes and refuses to encode; the order of the files does not matter', async function () {
    const decoder = await sd.loadTaesd(TINY[0]!);
    assert.equal(decoder.info.encoder, false);
    assert.ok(relErr(await decoder.decode(ref['tiny.latents']!), ref['tiny.decoded']!) < 1e-4);
    await assert.rejects(decoder.encode(ref['tiny.images']!), /this TAESD has no encoder/);
    decoder.dispose();
    decoder.dispose();
    await assert.rejects(async () => decoder.decode(ref['tiny.latents']!), /this TAESD was disposed/);
    const swapped = await sd.loadTaesd([TINY[1]!, TINY[0]!]);
    assert.ok(relErr(await swapped.encode(ref['tiny.images']!), ref['tiny.encoded']!) < 1e-4);
    swapped.dispose();
  });

  it('refuses what is no TAESD, a half given twice, halves of different TAESDs, and bad inputs', async function () {
    await assert.rejects(sd.loadTaesd(await tinyCheckpoint()), /is not a TAESD file: it looks like an SD 1\.x checkpoint/);
    await assert.rejects(sd.loadTaesd(fixture('lora', 'tiny-loha.safetensors')), /is not a TAESD file: it looks like a LoRA/);
    await assert.rejects(sd.loadTaesd([TINY[0]!, TINY_DIFFUSERS]), /both hold a TAESD decoder; give one decoder/);
    await assert.rejects(sd.loadTaesd([SD[0]!, TINY[1]!]), /belong to different TAESDs/);
    await assert.rejects(sd.loadTaesd(fixture('nothing-here.safetensors')), /loadTaesd\(\): taesd: no such file or folder/);
    await assert.rejects(sd.loadTaesd(fixture('tiny-taesd')), /is a folder; give the TAESD files themselves/);
    await assert.rejects(sd.loadTaesd([]), TypeError);
    const tae = await sd.loadTaesd(TINY);
    await assert.rejects(async () => tae.decode(sd.Tensor.from(new Float32Array(3 * 4), [1, 3, 2, 2])), /latents must have shape \[B, 4, h, w\]/);
    await assert.rejects(async () => tae.encode(sd.Tensor.from(new Float32Array(3 * 9), [1, 3, 3, 3])), /multiples of 2/);
    tae.dispose();
  });

  it('sdtorch info names a TAESD file as such', async function () {
    for (const file of [TINY[0]!, TINY_DIFFUSERS]) assert.equal((await native().inspectFile({ path: file })).family, 'taesd');
  });
});

describe('TAESD with a pipeline (tiny model)', function () {
  let pipe: sd.Pipeline;
  let plain: sd.Pipeline;
  before(async function () {
    // A folder: the files for the model's family (taesd_* for an SD 1.x structure).
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', taesd: fixture('tiny-taesd') });
    plain = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
  });
  after(() => {
    pipe?.dispose();
    plain?.dispose();
  });

  it('loadPipeline({ taesd: folder }) loads the family\'s files', function () {
    assert.deepEqual(pipe.taesd?.files, TINY);
    assert.equal(plain.taesd, undefined);
  });

  it("decoder 'taesd' gives the image of diffusers' StableDiffusionPipeline with the TAESD as its vae", async function () {
    const run = { prompt: 'a cat', negativePrompt: '', steps: 4, sampler: 'euler', cfgScale: 7.5, seed: 21, width: 32, height: 32 } as const;
    const res = await pipe.generate({ ...run, decoder: 'taesd' });
    const { data, info } = await sharp(res.images[0]!).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [32, 32, 3]);
    const expected = ref['pipeline.images']!.toArray() as Uint8Array;
    const mid = expected.filter((v) => v > 0 && v < 255).length;
    assert.ok(mid > 500, `the reference has ${mid} unsaturated values`);
    assert.ok(maxDiff(new Uint8Array(data), expected) <= 1, `max difference ${maxDiff(new Uint8Array(data), expected)} levels`);
    // The VAE makes another image from the same latents.
    const vae = await pipe.generate(run);
    assert.ok(relErr(vae.latents, res.latents) === 0);
    assert.ok(!vae.images[0]!.equals(res.images[0]!));
  });

  it("decoder 'taesd' without a TAESD is refused before any step; bad decoder and previewEvery values are refused", async function () {
    let steps = 0;
    await assert.rejects(plain.generate({ prompt: 'a cat', steps: 2, width: 16, height: 16, decoder: 'taesd', onProgress: () => steps++ }),
      /decoder 'taesd' needs a TAESD, and none is loaded with this tiny test model .*: pass loadPipeline\(file, \{ taesd: 'taesd_decoder\.safetensors' \}\)/);
    assert.equal(steps, 0);
    await assert.rejects(plain.generate({ prompt: 'a cat', steps: 2, width: 16, height: 16, hires: { scale: 2 }, decoder: 'taesd' }), /needs a TAESD/);
    await assert.rejects(plain.generate({ prompt: 'a', decoder: 'fast' as 'vae' }), /decoder must be 'vae' or 'taesd', got 'fast'/);
    for (const bad of [0, 1.5, -2, '3'])
      await assert.rejects(plain.generate({ prompt: 'a', previewEvery: bad as number }), /previewEvery must be a whole number of model evaluations, 1 or more/);
    // decode: false needs no decoder
    const res = await plain.generate({ prompt: 'a cat', steps: 2, width: 16, height: 16, decoder: 'taesd', decode: false });
    assert.equal(res.images.length, 0);
  });

  it('previews every N evaluations and at the last: the TAESD decode of that evaluation\'s estimate, first image, at the image size', async function () {
    const seen: Array<{ step: number; preview: sd.RgbImage; x0: sd.Tensor }> = [];
    const steps: number[] = [];
    await pipe.generate({
      prompt: ['a cat', 'a dog'], steps: 5, sampler: 'euler', seed: 3, width: 32, height: 24, previewEvery: 2, decode: false,
      onProgress: (p) => {
        steps.push(p.step);
        if (p.preview) seen.push({ step: p.step, preview: p.preview, x0: p.denoised!() });
      },
    });
    assert.deepEqual(steps, [1, 2, 3, 4, 5]);
    assert.deepEqual(seen.map((s) => s.step), [2, 4, 5]);
    for (const s of seen) {
      assert.deepEqual([s.preview.width, s.preview.height, s.preview.data.length], [32, 24, 32 * 24 * 3]);
      const [expected] = toImageData(await pipe.taesd!.decode(s.x0.slice(0, 0, 1)));
      assert.deepEqual(s.preview.data, expected!.data, `step ${s.step}`);
    }
    const png = await sharp(await sd.encodePng(seen[0]!.preview)).raw().toBuffer();
    assert.deepEqual(new Uint8Array(png), seen[0]!.preview.data);
  });

  it("previews without a TAESD: A1111's cheap approximation, one pixel per latent cell", async function () {
    const seen: Array<{ step: number; preview: sd.RgbImage; x0: Float32Array }> = [];
    await plain.generate({
      prompt: 'a cat', steps: 3, sampler: 'euler_a', seed: 5, width: 32, height: 48, batchSize: 2, previewEvery: 1, decode: false,
      onProgress: (p) => {
        if (p.preview) seen.push({ step: p.step, preview: p.preview, x0: p.denoised!().slice(0, 0, 1).toArray() as Float32Array });
      },
    });
    assert.deepEqual(seen.map((s) => s.step), [1, 2, 3]);
    for (const s of seen) {
      assert.deepEqual([s.preview.width, s.preview.height], [16, 24]);
      const expected = a1111Cheap(s.x0, 24, 16, A1111_SD);
      assert.ok(maxDiff(s.preview.data, expected) <= 1, `step ${s.step}`);
      assert.ok(expected.some((v) => v > 0 && v < 255));
    }
  });

  it('the cheap approximation takes SDXL\'s factors for SDXL families', function () {
    const g = new sd.Generator(4);
    const x = g.randn([1, 4, 5, 7]);
    const values = x.toArray() as Float32Array;
    const xl = cheapPreview(x, { timeIds: ['original_size'] })!;
    const v1 = cheapPreview(x, { timeIds: [] })!;
    assert.deepEqual([xl.width, xl.height], [7, 5]);
    assert.ok(maxDiff(xl.data, a1111Cheap(values, 5, 7, A1111_SDXL)) <= 1);
    assert.ok(maxDiff(v1.data, a1111Cheap(values, 5, 7, A1111_SD)) <= 1);
    assert.ok(maxDiff(xl.data, v1.data) > 10);
  });

  it('refuses a TAESD that does not fit the model, an encoder alone, and a folder without the family\'s files', async function () {
    const tiny = await tinyCheckpoint();
    await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: SD }), /taesd: .* decodes 8 pixels per latent cell, while the VAE of this tiny test model .* decodes 2: it is a TAESD for another model/);
    await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: TINY[1]! }), /is a TAESD encoder only; previews and decoder 'taesd' need its decoder/);
    const empty = tmpDir('sdtorch-taesd-');
    try {
      await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: empty.dir }), /loadPipeline\(\): taesd: the folder .* holds no TAESD for tiny test model .*: put taesd_decoder\.safetensors/);
      // SDXL's files are taesdxl_*: a folder with only those has none for SD 1.x.
      fs.copyFileSync(TINY[0]!, path.join(empty.dir, 'taesdxl_decoder.safetensors'));
      await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: empty.dir }), /holds no TAESD/);
      // Given by itself, SDXL's file has the same shapes as SD's: its name tells.
      await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: path.join(empty.dir, 'taesdxl_decoder.safetensors') }),
        /taesd: 'taesdxl_decoder.safetensors' is the TAESD for SDXL latents; this tiny test model .* needs taesd_decoder.safetensors/);
      // A folder with the family's encoder alone: the decoder is what is missing.
      fs.copyFileSync(TINY[1]!, path.join(empty.dir, 'taesd_encoder.safetensors'));
      await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: empty.dir }), /is a TAESD encoder only; previews and decoder 'taesd' need its decoder: give taesd_decoder.safetensors too/);
    } finally {
      empty.cleanup();
    }
    await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: 5 as unknown as string }), /taesd must be the TAESD decoder file/);
    await assert.rejects(sd.loadPipeline(tiny, { device: 'cpu', taesd: fixture('missing_decoder.safetensors') }), /loadPipeline\(\): taesd: no such file or folder/);
    // A failed loadTaesd keeps the TAESD there was.
    await assert.rejects(pipe.loadTaesd(SD), /8 pixels per latent cell/);
    assert.deepEqual(pipe.taesd?.files, TINY);
    assert.ok(relErr(await pipe.taesd!.decode(ref['tiny.latents']!), ref['tiny.decoded']!) < 1e-4);
  });
});

describe('the service previews with the TAESD of its folder', function () {
  const spec: JobSpec = {
    kind: 'txt2img', prompt: 'a cat', negativePrompt: '', seed: 1, subseed: -1, steps: 3, cfgScale: 7, sampler: 'Euler a',
    width: 32, height: 32, batchSize: 1, nIter: 1, clipSkip: 1, previewEvery: 1,
  };
  const previewWidths = async (taesdDir?: string) => {
    const store = new ModelStore({ weights: await tinyCheckpoint(), ...(taesdDir ? { taesdDir } : {}) });
    await store.refresh();
    const runner = new Runner(store, { device: 'cpu' });
    const previews: string[] = [];
    try {
      await runner.run(spec, new JobControl(), (p: JobProgress) => p.preview && previews.push(p.preview));
      await new Promise((r) => setTimeout(r, 50)); // the last PNG is made off the step
    } finally {
      runner.dispose();
    }
    return Promise.all(previews.map(async (b) => (await sharp(Buffer.from(b, 'base64')).metadata()).width));
  };

  it('TAESD previews at the image size with a TAESD folder, the cheap ones (a pixel per latent cell) without', async function () {
    const withTaesd = await previewWidths(fixture('tiny-taesd'));
    assert.ok(withTaesd.length >= 1 && withTaesd.every((w) => w === 32), JSON.stringify(withTaesd));
    const cheap = await previewWidths();
    assert.ok(cheap.length >= 1 && cheap.every((w) => w === 16), JSON.stringify(cheap));
  });
});
