// generate(): final latents of every sampler, img2img and a decoded batch equal diffusers'
// (test/fixtures/reference-1234.safetensors), plus the behaviour around them on a tiny model.
import assert from 'node:assert/strict';
import path from 'node:path';
import sharp from 'sharp';
import * as sd from '../lib';
import { relErrTensor as relErr } from './helpers';
import { readPngText } from '../lib/image/png';
import { tinyCheckpoint } from './tiny';
import { ensureWeights, repoRoot } from './weights';

const cat = { prompt: 'a photo of a cat', negativePrompt: 'blurry, low quality', cfgScale: 7.5 };
const initImage = path.join(repoRoot, 'test', 'fixtures', 'img2img-init.png');

describe('generate() matches diffusers (random SD 1.5, fp32 CPU)', function () {
  let ref: Record<string, sd.Tensor>;
  let pipe: sd.Pipeline;
  before(async function () {
    ref = await sd.loadTensors(path.join(repoRoot, 'test', 'fixtures', 'reference-1234.safetensors'));
    pipe = await sd.loadPipeline(ensureWeights().safetensors, { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  const cases = [
    'ddim.default', 'ddpm.default', 'pndm.default', 'euler.default', 'euler.karras', 'euler_a.default', 'heun.default',
    'lms.default', 'dpm2.default', 'dpm2_a.default', 'dpmpp_2m.default', 'dpmpp_2m.karras', 'dpmpp_2m_sde.karras', 'unipc.default',
  ];
  for (const c of cases) {
    it(`txt2img ${c}: final latents within 1e-3`, async function () {
      const [sampler, schedule] = c.split('.') as [string, 'default' | 'karras'];
      const r = await pipe.generate({ ...cat, width: 64, height: 64, steps: 8, seed: 42, sampler, schedule, decode: false });
      const e = relErr(r.latents, ref[`txt2img.${c}`]!);
      assert.ok(e < 1e-3, `relative error ${e}`);
    });
  }

  for (const sampler of ['ddim', 'euler', 'dpmpp_2m']) {
    it(`img2img ${sampler} (strength 0.6, 10 steps): final latents within 1e-3`, async function () {
      const r = await pipe.generate({ ...cat, image: initImage, strength: 0.6, steps: 10, seed: 11, sampler, decode: false });
      const e = relErr(r.latents, ref[`img2img.${sampler}`]!);
      assert.ok(e < 1e-3, `relative error ${e}`);
    });
  }

  it('a batch of two decodes to PNG pixels within 2/255, with infotext', async function () {
    const r = await pipe.generate({ ...cat, cfgScale: 5, width: 64, height: 64, steps: 6, seed: 7, sampler: 'euler_a', batchSize: 2 });
    assert.equal(r.images.length, 2);
    const expected = ref['txt2img.batch2.pixels']!.toArray() as Float32Array; // [2,64,64,3] in [0,1]
    for (const [i, png] of r.images.entries()) {
      const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [64, 64, 3]);
      let worst = 0;
      for (let j = 0; j < data.length; j++) worst = Math.max(worst, Math.abs(data[j]! - expected[i * data.length + j]! * 255));
      assert.ok(worst <= 2, `pixel off by ${worst}/255`);
      const params = readPngText(png).parameters!;
      assert.match(params, /^a photo of a cat\nNegative prompt: blurry, low quality\nSteps: 6, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x64, Model hash: [0-9a-f]{10}, Model: sd15-random-1234/);
    }
  });
});

describe('generate() behaviour (tiny model)', function () {
  let pipe: sd.Pipeline;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
  });
  const base = { prompt: 'a cat', width: 16, height: 16, steps: 3, decode: false } as const;

  it('same seed, same latents; another seed, other latents; a random seed is returned', async function () {
    const a = await pipe.generate({ ...base, seed: 5 });
    const b = await pipe.generate({ ...base, seed: 5 });
    const c = await pipe.generate({ ...base, seed: 6 });
    assert.equal(relErr(a.latents, b.latents), 0);
    assert.ok(relErr(a.latents, c.latents) > 1e-3);
    const r = await pipe.generate({ ...base });
    assert.ok(typeof r.seed === 'number' && Number.isInteger(r.seed));
    const again = await pipe.generate({ ...base, seed: r.seed });
    assert.equal(relErr(r.latents, again.latents), 0);
  });

  it('a 64-bit seed above 2^53 is used and written in the infotext exactly', async function () {
    const seed = 2n ** 63n + 5n;
    const r = await pipe.generate({ ...base, sampler: 'ddim', seed, decode: true });
    assert.equal(r.seed, seed);
    assert.match(r.infotexts[0], /, Seed: 9223372036854775813, /);
    const noise = sd.randn([1, 4, 8, 8], new sd.Generator(seed));
    const same = await pipe.generate({ ...base, sampler: 'ddim', seed: 1, latents: noise });
    assert.equal(relErr(r.latents, same.latents), 0);
  });

  it('given latents replace the seeded noise exactly', async function () {
    const noise = sd.randn([1, 4, 8, 8], new sd.Generator(9)); // the tiny VAE scales by 2, not 8
    const a = await pipe.generate({ ...base, sampler: 'ddim', seed: 9 });
    const b = await pipe.generate({ ...base, sampler: 'ddim', seed: 123, latents: noise });
    assert.equal(relErr(b.latents, a.latents), 0);
    await assert.rejects(pipe.generate({ ...base, latents: sd.randn([1, 4, 3, 3], new sd.Generator(1)) }), /latents must have shape \[1, 4, 8, 8\]/);
  });

  it('guidance off (cfgScale <= 1) differs from guided, and both are deterministic', async function () {
    const off = await pipe.generate({ ...base, seed: 3, cfgScale: 1, negativePrompt: 'x' });
    const off2 = await pipe.generate({ ...base, seed: 3, cfgScale: 1, negativePrompt: 'y' });
    const on = await pipe.generate({ ...base, seed: 3, cfgScale: 7, negativePrompt: 'x' });
    assert.equal(relErr(off.latents, off2.latents), 0, 'the negative prompt must not matter without guidance');
    assert.ok(relErr(off.latents, on.latents) > 1e-4);
  });

  it('reports progress and stops cleanly on abort', async function () {
    const seen: number[] = [];
    await pipe.generate({ ...base, seed: 1, steps: 4, sampler: 'heun', onProgress: (p) => seen.push(p.step) });
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7]);
    const ac = new AbortController();
    const steps: number[] = [];
    await assert.rejects(
      pipe.generate({ ...base, seed: 1, steps: 10, signal: ac.signal, onProgress: (p) => { steps.push(p.step); if (p.step === 2) ac.abort(); } }),
      (e: Error) => e.name === 'AbortError',
    );
    assert.equal(steps.at(-1), 2);
  });

  it('rejects bad options with what to do', async function () {
    await assert.rejects(pipe.generate({ ...base, width: 20 }), /width must be a positive multiple of 8, got 20 \(try 24\)/);
    await assert.rejects(pipe.generate({ ...base, steps: 0 }), /steps must be a positive integer/);
    await assert.rejects(pipe.generate({ ...base, sampler: 'nope' }), /unknown sampler 'nope'. Valid names: ddpm/);
    await assert.rejects(pipe.generate({ ...base, sampler: 'ddim', schedule: 'karras' }), /no karras schedule/);
    await assert.rejects(pipe.generate({ ...base, strength: 1.5 }), /strength must be in \(0, 1\]/);
    await assert.rejects(pipe.generate({ ...base, image: '/nonexistent.png' }), /nonexistent\.png/);
  });

  it('accepts A1111 sampler names', async function () {
    const a = await pipe.generate({ ...base, seed: 2, sampler: 'DPM++ 2M Karras' });
    const b = await pipe.generate({ ...base, seed: 2, sampler: 'dpmpp_2m', schedule: 'karras' });
    assert.equal(relErr(a.latents, b.latents), 0);
  });

  it('img2img from a Buffer of any format, odd size rounded down to multiples of 8, RGBA and grayscale', async function () {
    const rgba = await sharp({ create: { width: 21, height: 19, channels: 4, background: { r: 200, g: 10, b: 50, alpha: 0.5 } } }).png().toBuffer();
    const { width: _w, height: _h, ...noSize } = base;
    const r = await pipe.generate({ ...noSize, image: rgba, strength: 0.5, seed: 4 });
    assert.deepEqual(r.latents.shape, [1, 4, 8, 8]); // 21x19 -> 16x16, halved by the tiny VAE
    const gray = await sharp({ create: { width: 16, height: 24, channels: 3, background: '#808080' } }).grayscale().jpeg().toBuffer();
    const g = await pipe.generate({ ...noSize, image: gray, strength: 0.5, seed: 4, batchSize: 2 });
    const sized = await pipe.generate({ ...base, image: gray, strength: 0.5, seed: 4 }); // explicit size: resized
    assert.deepEqual(sized.latents.shape, [1, 4, 8, 8]);
    assert.deepEqual(g.latents.shape, [2, 4, 12, 8]);
  });

  it('returns PNGs and keeps models on the idle device between stages', async function () {
    const r = await pipe.generate({ ...base, seed: 8, decode: true, idleDevice: 'cpu' });
    assert.equal(r.images.length, 1);
    const meta = await sharp(r.images[0]).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 16, 16]);
  });

  it("the seed's own calls: preloadModelsFromStandardWeights + generate -> uint8 RGB", async function () {
    const models = await sd.preloadModelsFromStandardWeights(await tinyCheckpoint(), 'cpu');
    const out = await sd.generate({ prompt: 'a cat', uncondPrompt: '', doCfg: true, cfgScale: 7.5, samplerName: 'ddpm', models, tokenizer: models.tokenizer, device: 'cpu', idleDevice: 'cpu', nInferenceSteps: 3, seed: 42, width: 16, height: 24 });
    assert.deepEqual([out.width, out.height, out.data.length], [16, 24, 16 * 24 * 3]);
    assert.ok(out.data instanceof Uint8Array);
    const same = await sd.generate({ prompt: 'a cat', models, nInferenceSteps: 3, seed: 42, width: 16, height: 24, samplerName: 'ddpm' });
    assert.deepEqual(same.data, out.data);
  });
});
