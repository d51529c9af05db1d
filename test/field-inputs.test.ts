// Inputs from the field (seeds, CLI values, dtypes, sizes, infotexts, bad values reaching the
// engine), on the tiny model: each gets the right value or a clear error, and nothing kills the
// process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';

const cli = path.join(repoRoot, 'dist', 'cli.js');
function run(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: os.tmpdir(), encoding: 'utf8', env: { ...process.env, SDTORCH_WEIGHTS: '', HF_HUB_OFFLINE: '1' }, timeout: 120000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('inputs from the field', function () {
  let pipe: sd.Pipeline;
  let weights: string;
  const base = { prompt: 'a cat', width: 16, height: 16, steps: 2, decode: false } as const;
  before(async function () {
    weights = await tinyCheckpoint();
    pipe = await sd.loadPipeline(weights, { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  describe('seeds', function () {
    it('-1 (number, bigint or string) and no seed draw a random seed, which is returned', async function () {
      const seeds = new Set<number | bigint>();
      for (const seed of [-1, -1n, '-1', undefined] as const) {
        const r = await pipe.generate({ ...base, ...(seed === undefined ? {} : { seed }) });
        assert.equal(typeof r.seed, 'number');
        assert.ok(Number.isInteger(r.seed) && (r.seed as number) >= 0 && (r.seed as number) < 2 ** 32, String(r.seed));
        seeds.add(r.seed);
      }
      assert.ok(seeds.size >= 3, 'random seeds differ');
    });

    it('decimal strings are read exactly: the same latents as the number or BigInt', async function () {
      const a = await pipe.generate({ ...base, seed: 12345 });
      const b = await pipe.generate({ ...base, seed: '12345' });
      assert.equal(b.seed, 12345);
      assert.equal(a.latents.sub(b.latents).norm(), 0);
      const big = 2n ** 64n - 2n;
      const c = await pipe.generate({ ...base, seed: '18446744073709551614' });
      const d = await pipe.generate({ ...base, seed: big });
      assert.equal(c.seed, big);
      assert.equal(c.latents.sub(d.latents).norm(), 0);
      // and equal to torch's manual_seed(2^64 - 2) noise, drawn by the Generator
      const noise = sd.randn([1, 4, 8, 8], new sd.Generator(big));
      const e = await pipe.generate({ ...base, latents: noise, sampler: 'euler', seed: 1 });
      const f = await pipe.generate({ ...base, sampler: 'euler', seed: big });
      assert.equal(e.latents.sub(f.latents).norm(), 0);
    });

    it('unsafe JS numbers get one "pass a BigInt or a string" TypeError, from Generator and generate() alike', async function () {
      const unsafe = 2 ** 53 + 2;
      assert.throws(() => new sd.Generator(unsafe), (e: Error) => e instanceof TypeError && /MAX_SAFE_INTEGER/.test(e.message) && /BigInt/.test(e.message));
      await assert.rejects(pipe.generate({ ...base, seed: unsafe }), (e: Error) => e instanceof TypeError && /MAX_SAFE_INTEGER/.test(e.message) && /BigInt/.test(e.message) && /decimal string/.test(e.message));
    });

    it('other negative, fractional and non-numeric seeds are refused with what a seed is', async function () {
      for (const seed of [-2, -2n, 1.5, '1e3', 'abc', '', NaN, 2n ** 64n] as const) {
        await assert.rejects(pipe.generate({ ...base, seed: seed as never }), (e: Error) => e instanceof TypeError && /seed must be/.test(e.message), String(seed));
      }
    });
  });

  describe('CLI values', function () {
    before(function () {
      assert.ok(fs.existsSync(cli), 'dist/cli.js is missing: run npm run build:ts first');
    });

    it('--seed -1 is a random seed; --steps -3 and --seed abc get the CLI\'s own message', function () {
      const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-field-')), 'x.png');
      const ok = run(['generate', 'x', '--seed', '-1', '--steps', '1', '--width', '16', '--height', '16', '--weights', weights, '--out', out]);
      assert.equal(ok.code, 0, ok.err);
      assert.match(ok.err, /seed \d+/);
      const steps = run(['generate', 'x', '--steps', '-3', '--weights', weights]);
      assert.equal(steps.code, 1);
      assert.match(steps.err, /--steps must be a whole number of 1 or more, got '-3'/);
      assert.doesNotMatch(steps.err, /ambiguous/);
      const seed = run(['generate', 'x', '--seed', 'abc', '--weights', weights]);
      assert.match(seed.err, /--seed must be a whole number from 0 to 2\^64 - 1, or -1 for a random one, got 'abc'/);
    });

    it('--dtype takes the documented set only; --strength without --init-image is an error', function () {
      for (const dtype of ['float64', 'int8']) {
        const r = run(['generate', 'x', '--dtype', dtype, '--weights', weights]);
        assert.equal(r.code, 1);
        assert.match(r.err, new RegExp(`--dtype must be one of float32, float16, bfloat16, got '${dtype}'`));
      }
      const s = run(['generate', 'x', '--strength', '0.5', '--weights', weights]);
      assert.equal(s.code, 1);
      assert.match(s.err, /--strength applies to img2img only: add --init-image FILE/);
    });

    it('loadPipeline refuses dtypes networks do not compute in', async function () {
      for (const dtype of ['float64', 'int8']) {
        await assert.rejects(sd.loadPipeline(weights, { device: 'cpu', dtype: dtype as never }), new RegExp(`unknown dtype '${dtype}'; use float32, float16, bfloat16`));
      }
    });
  });

  describe('bad values reaching the engine', function () {
    it('size-like options are bounded with a RangeError before any allocation', async function () {
      await assert.rejects(pipe.generate({ ...base, batchSize: 1e9 }), /batchSize must be at most 64/);
      await assert.rejects(pipe.generate({ ...base, prompt: Array<string>(65).fill('x') }), /65 prompts × batchSize 1 = 65 images; at most 64/);
      await assert.rejects(pipe.generate({ ...base, width: 4096, height: 4096, batchSize: 2 }), /megapixels; at most 16 in one call/);
      await assert.rejects(pipe.generate({ ...base, width: 1e9 }), /width must be at most 4096/);
      await assert.rejects(pipe.generate({ ...base, steps: 1e9 }), /steps must be an integer from 1 to 1000/);
      await assert.rejects(pipe.generate({ ...base, prompt: 'a \u0000 b' }), /prompts cannot contain NUL characters/);
      await assert.rejects(pipe.generate({ ...base, clipSkip: '2' as never }), (e: Error) => e instanceof TypeError && /clipSkip must be a number .*got string '2'/.test(e.message));
    });

    it('a NaN timestep, token ids outside the vocabulary and a missing CUDA device get our words', async function () {
      const ctx = await pipe.textEncoder.forward(pipe.tokenizer.encode('x'));
      await assert.rejects(pipe.unet.forward(sd.randn([1, 4, 8, 8], new sd.Generator(1)), NaN, ctx), /t must be finite timesteps/);
      const ids = sd.Tensor.from(BigInt64Array.from({ length: 77 }, (_, i) => (i === 3 ? 50000n : 1n)), [1, 77], 'int64');
      await assert.rejects(pipe.textEncoder.forward(ids), /token ids must be in \[0, 49408\) \(this text encoder's vocabulary\), got 1 \.\. 50000/);
      const neg = sd.Tensor.from(BigInt64Array.from({ length: 77 }, () => -1n), [1, 77], 'int64');
      await assert.rejects(pipe.textEncoder.forward(neg), /token ids must be in \[0, 49408\)/);
      assert.throws(() => sd.Tensor.from([1, 2], [2]).to('cuda:7'), /device 'cuda:7' was requested but CUDA is not available .*use 'cpu'/);
      await assert.rejects(sd.loadPipeline(weights, { device: 'cuda:7' }), /device 'cuda:7' was requested but CUDA is not available/);
    });

    it('fuzz: random types and magnitudes for every option never kill the process', function () {
      // In a child process: a crash (abort, out of memory) shows as a non-zero exit or a signal.
      const script = `
require('ts-node/register/transpile-only');
const sd = require(${JSON.stringify(path.join(repoRoot, 'lib'))});
const junk = [undefined, null, NaN, Infinity, -Infinity, -1, 0, 0.5, 1, 3, 7, 8, 1e9, -1e9, 2 ** 53 + 2, 2 ** 64, 1n, -5n, 2n ** 70n,
  '', 'x', '20', '-1', '1e400', [], [1], ['a', 2], {}, { length: 1e9 }, () => 1, Symbol('s'), true, false, Buffer.alloc(3), new Float32Array(2)];
const keys = ['prompt', 'negativePrompt', 'steps', 'cfgScale', 'sampler', 'schedule', 'seed', 'width', 'height', 'batchSize', 'image',
  'strength', 'latents', 'onProgress', 'signal', 'idleDevice', 'decode', 'vaeTiling'];
let state = 7;
const pick = (xs) => xs[(state = (state * 1103515245 + 12345) % 2147483648) % xs.length];
(async () => {
  const pipe = await sd.loadPipeline(${JSON.stringify(weights)}, { device: 'cpu' });
  const outcomes = { resolved: 0, errors: 0 };
  for (let i = 0; i < 400; i++) {
    const o = { prompt: 'a cat', width: 16, height: 16, steps: 1, decode: false };
    for (let k = 0; k < 1 + (i % 2); k++) o[pick(keys)] = pick(junk);
    try {
      await pipe.generate(o);
      outcomes.resolved++;
    } catch (e) {
      if (!(e instanceof Error) || !e.message) throw new Error('a rejection that is not an Error with a message: ' + String(e));
      outcomes.errors++;
    }
  }
  for (const bad of [undefined, null, 'a cat', 42]) await pipe.generate(bad).then(() => { throw new Error('accepted ' + String(bad)); }, (e) => { if (!(e instanceof TypeError)) throw e; });
  console.log(JSON.stringify(outcomes));
})().catch((e) => { console.error(e); process.exit(3); });`;
      const r = spawnSync(process.execPath, ['-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 300000 });
      assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
      assert.equal(r.status, 0, r.stderr);
      const outcomes = JSON.parse(r.stdout.trim().split('\n').pop()!) as { resolved: number; errors: number };
      assert.equal(outcomes.resolved + outcomes.errors, 400);
      assert.ok(outcomes.errors > 100 && outcomes.resolved > 10, JSON.stringify(outcomes));
    });
  });

  describe('infotext', function () {
    it('drops keys with an empty value, as A1111 does', function () {
      const p = sd.parseInfotext('a cat\nSteps: 20, Operations: , Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768');
      assert.equal(p.params['Operations'], undefined);
      assert.equal(p.params['Sampler'], 'Euler a');
    });

    it('sd.parseInfotext gives generate() options, which reproduce the image', async function () {
      const r = await pipe.generate({ ...base, prompt: 'a red cat', negativePrompt: 'blurry', seed: '18446744073709551614', sampler: 'DPM++ 2M Karras', steps: 3, cfgScale: 6.5, decode: true });
      const p = sd.parseInfotext(r.infotexts[0]!);
      assert.deepEqual(
        { prompt: p.prompt, negativePrompt: p.negativePrompt, steps: p.steps, sampler: p.sampler, cfgScale: p.cfgScale, seed: p.seed, width: p.width, height: p.height },
        { prompt: 'a red cat', negativePrompt: 'blurry', steps: 3, sampler: 'DPM++ 2M Karras', cfgScale: 6.5, seed: '18446744073709551614', width: 16, height: 16 },
      );
      const again = await pipe.generate({ ...p, decode: false });
      assert.equal(again.latents.sub(r.latents).norm(), 0);
      // A1111 1.9+ writes the schedule apart: "Sampler: DPM++ 2M, Schedule type: Karras"
      assert.equal(sd.parseInfotext('x\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 64x64').sampler, 'DPM++ 2M Karras');
    });

    it('a hires fix infotext gives the hires options (its strength is the second pass\'s), which reproduce the image', async function () {
      const hires = { scale: 1.5, steps: 2, strength: 0.55, upscaler: 'lanczos' } as const;
      const r = await pipe.generate({ ...base, prompt: 'a red cat', seed: 9, steps: 3, hires, decode: true });
      const p = sd.parseInfotext(r.infotexts[0]!);
      assert.deepEqual(p.hires, hires);
      assert.equal(p.strength, undefined, 'the hires strength is not an img2img strength');
      assert.deepEqual([p.width, p.height], [16, 16], "Size is the first pass's");
      const again = await pipe.generate({ ...p, decode: false });
      assert.equal(again.latents.sub(r.latents).norm(), 0);
      // A1111's default upscaler is Latent; one sdtorch lacks leaves the hires fix and its strength out.
      const line = 'x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Denoising strength: 0.4, Hires upscale: 2';
      assert.deepEqual(sd.parseInfotext(line).hires, { scale: 2, upscaler: 'latent', strength: 0.4 });
      const esrgan = sd.parseInfotext(`${line}, Hires upscaler: R-ESRGAN 4x+`);
      assert.deepEqual([esrgan.hires, esrgan.strength, esrgan.params['Hires upscaler']], [undefined, undefined, 'R-ESRGAN 4x+']);
      // "Hires resize" (a target size): read as a scale when both sides scale alike.
      const resize = 'x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x96, Denoising strength: 0.45, Hires resize: 128x192, Hires upscaler: Latent';
      assert.deepEqual([sd.parseInfotext(resize).hires, sd.parseInfotext(resize).strength], [{ scale: 2, upscaler: 'latent', strength: 0.45 }, undefined]);
      const skewed = sd.parseInfotext(resize.replace('128x192', '128x128'));
      assert.deepEqual([skewed.hires, skewed.strength, skewed.params['Hires resize']], [undefined, undefined, '128x128']);
    });
  });
});
