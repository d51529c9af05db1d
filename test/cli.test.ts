// The `sdtorch` command, run as a user would (compiled dist/cli.js) on a tiny random model.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { readPngText, setPngText } from '../lib/image/png';
import { tinyCheckpoint, tinyInpaintCheckpoint } from './tiny';
import { repoRoot } from './weights';

const cli = path.join(repoRoot, 'dist', 'cli.js');
function run(args: string[], env: NodeJS.ProcessEnv = {}, cwd = os.tmpdir()) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', env: { ...process.env, SDTORCH_WEIGHTS: '', HF_HUB_OFFLINE: '1', ...env }, timeout: 120000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('sdtorch CLI', function () {
  let weights: string;
  let dir: string;
  before(async function () {
    assert.ok(fs.existsSync(cli), 'dist/cli.js is missing: run npm run build:ts first');
    weights = await tinyCheckpoint();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-cli-'));
  });

  it('generate writes a PNG with its parameters and shows progress', function () {
    const out = path.join(dir, 'cat.png');
    const r = run(['generate', 'a photo of a cat', '--negative', 'blurry', '--steps', '3', '--cfg', '7', '--sampler', 'Euler a', '--seed', '1', '--width', '16', '--height', '16', '--weights', weights, '--out', out]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), out);
    assert.match(r.err, /3\/3 \[=+\] [\d.]+ it\/s ETA/);
    const params = readPngText(fs.readFileSync(out)).parameters;
    assert.match(params!, /^a photo of a cat\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 16x16, Model hash: [0-9a-f]{10}, Model: tiny-random$/);
  });

  it('never overwrites: a second run gets a numbered name; --overwrite replaces', function () {
    const out = path.join(dir, 'same.png');
    const args = ['generate', 'x', '--steps', '2', '--seed', '3', '--width', '16', '--height', '16', '--weights', weights, '--out', out];
    assert.equal(run(args).code, 0);
    const before = fs.readFileSync(out);
    const r = run([...args.slice(0, 4), '--seed', '4', ...args.slice(6)]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), path.join(dir, 'same-1.png'));
    assert.deepEqual(fs.readFileSync(out), before);
    const o = run([...args.slice(0, 4), '--seed', '4', ...args.slice(6), '--overwrite']);
    assert.equal(o.code, 0, o.err);
    assert.notDeepEqual(fs.readFileSync(out), before);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp')), []);
  });

  it('--out: a folder, a name without extension, a missing folder, a JPEG name', function () {
    const tiny = ['--steps', '1', '--seed', '7', '--width', '16', '--height', '16', '--weights', weights];
    const work = fs.mkdtempSync(path.join(dir, 'out-'));
    fs.mkdirSync(path.join(work, 'b3'));
    const d = run(['generate', 'x', ...tiny, '--batch', '2', '--out', 'b3/'], {}, work);
    assert.equal(d.code, 0, d.err);
    assert.deepEqual(d.out.trim().split('\n'), [path.join(work, 'b3', 'sdtorch-7.png'), path.join(work, 'b3', 'sdtorch-7-1.png')]);
    assert.deepEqual(fs.readdirSync(work).sort(), ['b3']);
    // An existing folder named without the trailing '/' is a folder too.
    const d2 = run(['generate', 'x', ...tiny, '--out', 'b3'], {}, work);
    assert.equal(d2.out.trim(), path.join(work, 'b3', 'sdtorch-7-2.png'), d2.err);
    fs.mkdirSync(path.join(work, 'demo'));
    const unrelated = path.join(work, 'demo', 'my-1.png');
    fs.writeFileSync(unrelated, 'not an image of this run');
    const e = run(['generate', 'x', ...tiny, '--batch', '2', '--out', 'demo/myrun', '--overwrite'], {}, work);
    assert.equal(e.code, 0, e.err);
    assert.deepEqual(e.out.trim().split('\n'), [path.join(work, 'demo', 'myrun.png'), path.join(work, 'demo', 'myrun-1.png')]);
    assert.equal(fs.readFileSync(unrelated, 'utf8'), 'not an image of this run');
    assert.deepEqual(fs.readdirSync(path.join(work, 'demo')).sort(), ['my-1.png', 'myrun-1.png', 'myrun.png']);
    for (const [out, re] of [
      ['nodir/x.png', /--out nodir\/x\.png: folder nodir does not exist/],
      ['nodir/', /--out nodir\/: folder nodir does not exist/],
      ['x.jpg', /--out x\.jpg: sdtorch writes PNG only .*name the file \.png, or give no extension/],
    ]) {
      const r = run(['generate', 'x', ...tiny, '--out', out as string], {}, work);
      assert.equal(r.code, 1, out as string);
      assert.match(r.err, re as RegExp);
      assert.doesNotMatch(r.err, /ENOENT/);
    }
    assert.deepEqual(fs.readdirSync(work).sort(), ['b3', 'demo']);
  });

  it('batch and img2img', function () {
    const init = path.join(repoRoot, 'test', 'fixtures', 'img2img-init.png');
    const r = run(['generate', 'x', '--steps', '2', '--seed', '5', '--batch', '2', '--init-image', init, '--strength', '0.5', '--weights', weights, '--out', path.join(dir, 'i2i.png')]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.out.trim().split('\n'), [path.join(dir, 'i2i.png'), path.join(dir, 'i2i-1.png')]);
    assert.match(readPngText(fs.readFileSync(path.join(dir, 'i2i-1.png'))).parameters!, /Denoising strength: 0\.5/);
  });

  it('--weights takes a diffusers folder; a folder without model_index.json is a clear error', function () {
    const folder = path.join(repoRoot, 'test', 'fixtures', 'diffusers-tiny-safetensors');
    const out = path.join(dir, 'diffusers.png');
    const r = run(['generate', 'a cat', '--weights', folder, '--steps', '2', '--seed', '1', '--width', '32', '--height', '32', '--out', out]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), out);
    const bad = run(['generate', 'a cat', '--weights', dir, '--steps', '2']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /is neither a checkpoint file nor a diffusers folder \(no model_index\.json in it\)/);
  });

  it('uses SDTORCH_WEIGHTS when no --weights is given', function () {
    const r = run(['generate', 'x', '--steps', '1', '--seed', '1', '--width', '16', '--height', '16', '--out', path.join(dir, 'env.png')], { SDTORCH_WEIGHTS: weights });
    assert.equal(r.code, 0, r.err);
  });

  it('explains how to pass weights when none are found offline', function () {
    const r = run(['generate', 'x', '--steps', '1'], { SDTORCH_CACHE: path.join(dir, 'empty-cache') });
    assert.equal(r.code, 1);
    assert.match(r.err, /--weights/);
    assert.match(r.err, /SDTORCH_WEIGHTS/);
  });

  it('--embeddings, --clip-skip and --emphasis reach the image; --from-png makes the same image again', function () {
    const emb = path.join(repoRoot, 'test', 'fixtures', 'embeddings');
    const first = path.join(dir, 'ti.png');
    const a = run(['generate', 'a (darkstyle:1.3) cat, [dog:cat:0.5]', '--embeddings', emb, '--clip-skip', '2', '--emphasis', 'no-norm', '--steps', '2', '--seed', '9', '--width', '16', '--height', '16', '--weights', weights, '--out', first]);
    assert.equal(a.code, 0, a.err);
    const params = readPngText(fs.readFileSync(first)).parameters!;
    assert.match(params, /^a \(darkstyle:1\.3\) cat, \[dog:cat:0\.5\]\nSteps: 2, .*Seed: 9, Size: 16x16, .*Clip skip: 2, TI hashes: "darkstyle: [0-9a-f]{12}", Emphasis: No norm/);
    const again = path.join(dir, 'again.png');
    const b = run(['generate', '--from-png', first, '--embeddings', emb, '--weights', weights, '--out', again]);
    assert.equal(b.code, 0, b.err);
    assert.ok(fs.readFileSync(again).equals(fs.readFileSync(first)), 'the same PNG, infotext included');
    const bad = run(['generate', 'x', '--emphasis', 'loud', '--weights', weights]);
    assert.match(bad.err, /--emphasis must be one of original, no-norm, ignore, none, got 'loud'/);
  });

  it('--from-png of an img2img image takes its strength; without --init-image it says to pass one', function () {
    const image = path.join(repoRoot, 'test', 'fixtures', 'img2img-init.png');
    const first = path.join(dir, 'from-i2i.png');
    const a = run(['generate', 'a cat', '--init-image', image, '--strength', '0.5', '--sampler', 'DPM++ SDE Karras', '--steps', '4', '--seed', '3',
      '--width', '16', '--height', '16', '--weights', weights, '--out', first]);
    assert.equal(a.code, 0, a.err);
    assert.match(readPngText(fs.readFileSync(first)).parameters!, /Denoising strength: 0\.5/);
    const again = path.join(dir, 'from-i2i-again.png');
    const b = run(['generate', '--from-png', first, '--init-image', image, '--weights', weights, '--out', again]);
    assert.equal(b.code, 0, b.err);
    assert.ok(fs.readFileSync(again).equals(fs.readFileSync(first)), 'the same PNG, infotext included');
    const c = run(['generate', '--from-png', first, '--weights', weights, '--out', path.join(dir, 'from-i2i-txt.png')]);
    assert.match(c.err, /was made by img2img \(Denoising strength: 0\.5\): pass its init image with --init-image FILE/);
  });

  it('--from-png of a hires fix image runs the hires fix again (the CLI has no hires flags); an upscaler sdtorch lacks is said', async function () {
    const first = path.join(dir, 'hires.png');
    const pipe = await sd.loadPipeline(weights, { device: 'cpu' });
    try {
      const r = await pipe.generate({ prompt: 'a cat', steps: 3, seed: 4, width: 16, height: 16, hires: { scale: 1.5, steps: 2, strength: 0.5, upscaler: 'latent' } });
      fs.writeFileSync(first, r.images[0]!);
    } finally {
      pipe.dispose();
    }
    assert.match(readPngText(fs.readFileSync(first)).parameters!, /Steps: 3, .*Size: 16x16, .*Denoising strength: 0\.5, Hires upscale: 1\.5, Hires steps: 2, Hires upscaler: Latent/);
    const again = path.join(dir, 'hires-again.png');
    const b = run(['generate', '--from-png', first, '--weights', weights, '--out', again]);
    assert.equal(b.code, 0, b.err);
    assert.ok(fs.readFileSync(again).equals(fs.readFileSync(first)), 'the same PNG, infotext included');
    const esrgan = path.join(dir, 'hires-esrgan.png');
    const text = readPngText(fs.readFileSync(first)).parameters!.replace('Hires upscaler: Latent', 'Hires upscaler: R-ESRGAN 4x+');
    fs.writeFileSync(esrgan, setPngText(fs.readFileSync(first), 'parameters', text));
    const c = run(['generate', '--from-png', esrgan, '--weights', weights, '--out', path.join(dir, 'hires-first-pass.png')]);
    assert.equal(c.code, 0, c.err);
    assert.match(c.err, /was made with the hires upscaler R-ESRGAN 4x\+, which sdtorch lacks \(it has Latent and Lanczos\): making the first pass only/);
    const image = path.join(repoRoot, 'test', 'fixtures', 'img2img-init.png');
    const d = run(['generate', '--from-png', first, '--init-image', image, '--weights', weights, '--out', path.join(dir, 'hires-i2i.png')]);
    assert.equal(d.code, 0, d.err);
    assert.match(d.err, /was made with the hires fix, which applies to txt2img: not run with --init-image/);
  });

  it('inpainting, schedule and model flags reach the image; --from-png makes the same image again', function () {
    const image = path.join(repoRoot, 'test', 'fixtures', 'inpaint', 'image.png');
    const mask = path.join(repoRoot, 'test', 'fixtures', 'inpaint', 'mask.png');
    const first = path.join(dir, 'inpaint.png');
    const a = run(['generate', 'a cat', '--init-image', image, '--mask', mask, '--mask-blur', '3', '--inpaint-area', 'masked', '--inpaint-padding', '8',
      '--width', '16', '--height', '16', '--sampler', 'euler', '--timestep-spacing', 'trailing', '--zero-terminal-snr', '--rescale-cfg', '0.7',
      '--prediction', 'epsilon', '--steps', '2', '--seed', '3', '--weights', weights, '--out', first]);
    assert.equal(a.code, 0, a.err);
    const params = readPngText(fs.readFileSync(first)).parameters!;
    assert.match(params, /Size: 16x16, .*Denoising strength: 1, Mask blur: 3, Inpaint area: Only masked, Masked area padding: 8, Noise Schedule: Zero Terminal SNR, Guidance rescale: 0\.7, Timestep spacing: trailing$/);
    const again = path.join(dir, 'inpaint-again.png');
    const b = run(['generate', '--from-png', first, '--init-image', image, '--mask', mask, '--weights', weights, '--out', again]);
    assert.equal(b.code, 0, b.err);
    assert.ok(fs.readFileSync(again).equals(fs.readFileSync(first)), 'the same PNG, infotext included');
    for (const [args, re] of [
      [['--mask', mask], /--mask needs the image to inpaint: add --init-image FILE/],
      [['--mask-blur', '2'], /--mask-blur applies to inpainting only: add --mask FILE/],
      [['--init-image', image, '--mask', mask, '--mask-blur', '-1'], /--mask-blur must be a whole number of pixels \(0 or more\), got '-1'/],
      [['--init-image', image, '--mask', mask, '--inpaint-area', 'some'], /--inpaint-area must be one of whole, masked, got 'some'/],
      [['--prediction', 'x0'], /--prediction must be one of epsilon, v, got 'x0'/],
      [['--timestep-spacing', 'even'], /--timestep-spacing must be one of leading, linspace, trailing, got 'even'/],
      [['--rescale-cfg', '2'], /sdtorch: --rescale-cfg must be a number from 0 \(off\) to 1, got 2/],
      [['--sampler', 'heun', '--zero-terminal-snr'], /sdtorch: --sampler heun cannot use zero terminal SNR/],
      [['--init-image', image, '--mask', mask, '--inpaint-padding', '8'], /--inpaint-padding applies to --inpaint-area masked only: pass --inpaint-area masked too, or leave --inpaint-padding out/],
    ] as Array<[string[], RegExp]>) {
      const r = run(['generate', 'x', '--steps', '2', '--width', '16', '--height', '16', '--weights', weights, ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, re);
      assert.doesNotMatch(r.err, /generate\(\)|rescaleCfg|inpaintPadding|inpaintArea/);
    }
  });

  it('--schedule / --scheduler take every schedule, ours or A1111\'s; a flag wins over the schedule a PNG\'s sampler carries', function () {
    const tiny = ['--steps', '3', '--seed', '4', '--width', '16', '--height', '16', '--weights', weights];
    const first = path.join(dir, 'scheduled.png');
    const a = run(['generate', 'x', ...tiny, '--sampler', 'DPM++ SDE', '--scheduler', 'Exponential', '--out', first]);
    assert.equal(a.code, 0, a.err);
    assert.match(readPngText(fs.readFileSync(first)).parameters!, /Steps: 3, Sampler: DPM\+\+ SDE Exponential, /);
    const same = path.join(dir, 'scheduled-same.png');
    assert.equal(run(['generate', 'x', ...tiny, '--sampler', 'dpmpp_sde', '--schedule', 'exponential', '--out', same]).code, 0);
    assert.ok(fs.readFileSync(same).equals(fs.readFileSync(first)), 'our names and A1111\'s give the same PNG');
    const other = path.join(dir, 'scheduled-karras.png');
    const b = run(['generate', '--from-png', first, '--weights', weights, '--schedule', 'sgm uniform', '--out', other]);
    assert.equal(b.code, 0, b.err);
    assert.match(readPngText(fs.readFileSync(other)).parameters!, /Steps: 3, Sampler: DPM\+\+ SDE SGM Uniform, /);
    for (const [args, re] of [
      [['--schedule', 'polyexponential'], /sdtorch: unknown schedule 'polyexponential': use 'default', 'karras', 'exponential', 'beta', 'sgm_uniform'/],
      [['--schedule', 'karras', '--scheduler', 'beta'], /--schedule karras and --scheduler beta are one flag given twice/],
      [['--sampler', 'lcm', '--schedule', 'karras'], /sdtorch: --sampler lcm has no karras schedule \(diffusers' LCMScheduler/],
      [['--sampler', 'euler', '--schedule', 'sgm_uniform', '--timestep-spacing', 'leading'], /'sgm_uniform' is the 'trailing' timestep spacing.*leave --timestep-spacing out/],
    ] as Array<[string[], RegExp]>) {
      const r = run(['generate', 'x', ...tiny, ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, re);
    }
  });

  it('accepts the inpainting flags\' defaults anywhere; refuses other values without --mask', function () {
    const tiny = ['--steps', '1', '--seed', '2', '--width', '16', '--height', '16', '--weights', weights];
    const t = run(['generate', 'x', ...tiny, '--mask-blur', '0', '--inpaint-area', 'whole', '--inpaint-padding', '32', '--out', path.join(dir, 'defaults.png')]);
    assert.equal(t.code, 0, t.err);
    const image = path.join(repoRoot, 'test', 'fixtures', 'inpaint', 'image.png');
    const mask = path.join(repoRoot, 'test', 'fixtures', 'inpaint', 'mask.png');
    const i = run(['generate', 'x', ...tiny, '--init-image', image, '--mask', mask, '--inpaint-padding', '32', '--out', path.join(dir, 'defaults-inpaint.png')]);
    assert.equal(i.code, 0, i.err);
    const p = run(['generate', 'x', ...tiny, '--inpaint-padding', '8']);
    assert.equal(p.code, 1);
    assert.match(p.err, /--inpaint-padding applies to inpainting only: add --mask FILE, or leave --inpaint-padding out/);
  });

  it('an inpainting checkpoint without --init-image and --mask says which flags to add', async function () {
    const r = run(['generate', 'x', '--steps', '1', '--width', '16', '--height', '16', '--weights', await tinyInpaintCheckpoint()]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^sdtorch: this checkpoint is an inpainting model \(its UNet takes 9 input channels\): pass --init-image and --mask \(white = repaint\)$/m);
  });

  it('says what was wrong with bad options', function () {
    const r = run(['generate', 'x', '--width', '100', '--weights', weights]);
    assert.equal(r.code, 1);
    assert.match(r.err, /width must be a positive multiple of 8, got 100/);
    const u = run(['frobnicate']);
    assert.equal(u.code, 1);
    assert.match(u.err, /unknown command 'frobnicate'/);
    const m = run(['generate', 'x', '--weights', path.join(dir, 'missing.safetensors')]);
    assert.equal(m.code, 1);
    assert.match(m.err, /missing\.safetensors/);
  });

  it('info FILE tells family, dtypes and parameter counts; info PNG shows its parameters', function () {
    const r = run(['info', weights]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /family: sd1/);
    assert.match(r.out, /unet: [\d.]+M parameters \(float32\)/);
    assert.match(r.out, /text encoder: [\d.]+M parameters/);
    const p = run(['info', path.join(dir, 'cat.png')]);
    assert.match(p.out, /Sampler: Euler a/);
  });

  it('info says how to use a VAE or a LoRA file, and to pass a diffusers folder rather than its files', function () {
    const folder = path.join(repoRoot, 'test', 'fixtures', 'diffusers-tiny-safetensors');
    const vae = run(['info', path.join(folder, 'vae', 'diffusion_pytorch_model.safetensors')]);
    assert.equal(vae.code, 0, vae.err);
    assert.match(vae.out, /loads as: a VAE: use it with --vae FILE \(loadPipeline\(model, \{ vae \}\)\)/);
    const lora = run(['info', path.join(repoRoot, 'test', 'fixtures', 'lora', 'tiny-loha.safetensors')]);
    assert.equal(lora.code, 0, lora.err);
    assert.match(lora.out, /loads as: a LoRA: use it with --lora FILE:W or <lora:name:W>/);
    for (const json of ['model_index.json', path.join('unet', 'config.json')]) {
      const r = run(['info', path.join(folder, json)], {}, repoRoot);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /is part of the diffusers folder test\/fixtures\/diffusers-tiny-safetensors: pass the folder itself/);
    }
    const te = run(['info', path.join(folder, 'text_encoder', 'model.safetensors')], {}, repoRoot);
    assert.match(te.out, /loads as: part of the diffusers folder test\/fixtures\/diffusers-tiny-safetensors: pass the folder itself/);
  });

  it('--taesd with --decoder taesd decodes with the TAESD; --decoder taesd alone says to add --taesd; info names a TAESD file', function () {
    const taesd = path.join(repoRoot, 'test', 'fixtures', 'tiny-taesd');
    const args = ['generate', 'a cat', '--steps', '2', '--seed', '4', '--width', '16', '--height', '16', '--weights', weights, '--overwrite'];
    const fast = run([...args, '--taesd', taesd, '--decoder', 'taesd', '--out', path.join(dir, 'fast.png')]);
    assert.equal(fast.code, 0, fast.err);
    const full = run([...args, '--taesd', taesd, '--out', path.join(dir, 'full.png')]);
    assert.equal(full.code, 0, full.err);
    const [a, b] = [fs.readFileSync(path.join(dir, 'fast.png')), fs.readFileSync(path.join(dir, 'full.png'))];
    assert.deepEqual([a.readUInt32BE(16), a.readUInt32BE(20)], [16, 16]);
    assert.ok(!a.equals(b), 'the TAESD and the VAE made the same PNG');
    const alone = run([...args, '--decoder', 'taesd']);
    assert.equal(alone.code, 1);
    assert.match(alone.err, /--decoder taesd needs --taesd FILE/);
    const bad = run([...args, '--decoder', 'fast']);
    assert.match(bad.err, /--decoder must be one of vae, taesd, got 'fast'/);
    const info = run(['info', path.join(taesd, 'taesd_decoder.safetensors')]);
    assert.equal(info.code, 0, info.err);
    assert.match(info.out, /family: taesd\n {2}loads as: a TAESD \(tiny autoencoder\) file: use it with --taesd FILE/);
  });

  it('info --system reports libtorch and the binary', function () {
    const r = run(['info', '--system']);
    assert.equal(r.code, 0, r.err);
    const info = JSON.parse(r.out);
    assert.match(info.torchVersion, /^2\.\d+/);
    assert.equal(info.cudaAvailable, false);
    assert.match(info.binary, /sdtorch.*\.node$/);
  });

  it('--help lists the commands and samplers', function () {
    const r = run(['--help']);
    assert.equal(r.code, 0);
    for (const command of ['generate', 'serve', 'info']) {
      const c = run([command, '--help']);
      assert.equal(c.code, 0, c.err);
      assert.match(c.out, /^Usage:/);
    }
    assert.match(r.out, /sdtorch generate/);
    assert.match(r.out, /dpmpp_2m_sde/);
    assert.match(r.out, /--schedule S +default \| karras \| exponential \| beta \| sgm_uniform/);
    assert.match(r.out, /--width W --height H multiples of 8 \(default: the model's size: 512 SD 1\.x, 768 SD 2\.x 768-v, 1024 SDXL;/);
  });
});
