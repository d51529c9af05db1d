// SDXL on the tiny SDXL presets (issue #15): the base and refiner structures at toy widths, drawn by
// the fixture recipe, against diffusers' StableDiffusionXLPipeline / Img2Img and its twins of these
// networks (test/fixtures/tiny-sdxl-reference.*, scripts/make_sdxl_reference.py --part tiny): every
// component, three samplers, micro-conditioning, the zeroed empty negative, img2img, the refiner
// hand-off, a kohya SDXL LoRA and an SDXL (clip_l + clip_g) embedding.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import { native } from '../lib/native/load';
import { fixture, relErrTensor as relErr, tmpDir } from './helpers';
import { componentTests, SdxlReference } from './sdxl-reference';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';
import { startServer } from '../lib/server/serve';

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

  it('the same LoRA in PEFT/diffusers names (unet., text_encoder., text_encoder_2.; lora_A/lora_B, no alpha): the same latents', async function () {
    // kohya module -> the PEFT name diffusers saves (alpha 2 of rank 4 folded into lora_B: PEFT without alpha uses alpha = rank)
    const ldm: Array<[RegExp, string]> = [
      [/^lora_te1_text_model_(.*)$/, 'text_encoder.text_model.$1'], [/^lora_te2_text_model_(.*)$/, 'text_encoder_2.text_model.$1'],
      [/^lora_unet_input_blocks_4_1_(.*)$/, 'unet.down_blocks.1.attentions.0.$1'], [/^lora_unet_input_blocks_5_1_(.*)$/, 'unet.down_blocks.1.attentions.1.$1'],
      [/^lora_unet_middle_block_1_(.*)$/, 'unet.mid_block.attentions.0.$1'], [/^lora_unet_output_blocks_0_1_(.*)$/, 'unet.up_blocks.0.attentions.0.$1'],
    ];
    const dotted = (rest: string) =>
      rest.replace(/encoder_layers_(\d+)_/, 'encoder.layers.$1.').replace(/self_attn_/, 'self_attn.').replace(/mlp_/, 'mlp.')
        .replace(/transformer_blocks_(\d+)_/, 'transformer_blocks.$1.').replace(/(attn\d)_/, '$1.').replace(/to_out_0$/, 'to_out.0').replace(/ff_net_2$/, 'ff.net.2');
    const kohya = await sd.loadTensors(fixture('lora', 'tiny-sdxl-kohya.safetensors'));
    const peft: Record<string, sd.Tensor> = {};
    for (const [key, t] of Object.entries(kohya)) {
      const [module, ...part] = key.split('.');
      const rule = ldm.find(([re]) => re.test(module!));
      assert.ok(rule, module);
      const name = dotted(module!.replace(rule[0], rule[1]));
      if (part[0] === 'lora_down') peft[`${name}.lora_A.weight`] = t;
      if (part[0] === 'lora_up') peft[`${name}.lora_B.weight`] = t.to(undefined, 'float32').mul(Number((kohya[`${module}.alpha`]!.toArray() as Float32Array)[0]) / 4);
    }
    const file = path.join(tmp.dir, 'tiny-sdxl-peft.safetensors');
    await sd.saveTensors(file, peft);
    await reference.sameLatents(base, 'lora.txt2img.euler', { loras: [{ path: file, weight: 1 }] });
    await reference.sameLatents(base, 'txt2img.euler');
  });

  it('an SDXL embedding (clip_l and clip_g vectors, each into its encoder): final latents within 1e-3', async function () {
    await reference.sameLatents(base, 'ti.txt2img.euler', { embeddingDirs: [fixture('embeddings')] });
  });

  it('the CLI: --refiner (the base freed first), SDXL size flags; the PNG names base and refiner as A1111 does', async function () {
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), 'generate', 'a photo of a cat', '--weights', files['tiny-sdxl']!, ...args], {
        encoding: 'utf8', env: { ...process.env, SDTORCH_WEIGHTS: '', HF_HUB_OFFLINE: '1' }, timeout: 120_000,
      });
    const common = ['--negative', 'blurry, low quality', '--steps', '6', '--sampler', 'euler', '--cfg', '6', '--seed', '46', '--width', '64', '--height', '64', '--device', 'cpu'];
    const out = path.join(tmp.dir, 'refined.png');
    const r = cli([...common, '--refiner', files['tiny-sdxl-refiner']!, '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    const lib = await base.generate({ prompt: 'a photo of a cat', negativePrompt: 'blurry, low quality', steps: 6, sampler: 'euler', cfgScale: 6, seed: 46, width: 64, height: 64, refiner: { pipeline: refiner } });
    assert.ok(fs.readFileSync(out).equals(lib.images[0]!), 'the CLI image is the library one, byte for byte');
    assert.match(lib.infotexts[0]!, /Model: tiny-sdxl, Refiner: tiny-sdxl-refiner \[[0-9a-f]{10}\], Refiner switch at: 0\.8$/);
    const sized = path.join(tmp.dir, 'sized.png');
    assert.equal(cli([...common, '--original-size', '128x96', '--crop-top-left', '8,0', '--out', sized]).status, 0);
    const plain = await base.generate({ prompt: 'a photo of a cat', negativePrompt: 'blurry, low quality', steps: 6, sampler: 'euler', cfgScale: 6, seed: 46, width: 64, height: 64, originalSize: { width: 128, height: 96 }, cropTopLeft: { top: 8, left: 0 } });
    assert.ok(fs.readFileSync(sized).equals(plain.images[0]!));
    const unsized = await base.generate({ prompt: 'a photo of a cat', negativePrompt: 'blurry, low quality', steps: 6, sampler: 'euler', cfgScale: 6, seed: 46, width: 64, height: 64, decode: false });
    assert.ok(plain.latents.sub(unsized.latents).norm() > 1e-3 * unsized.latents.norm(), 'the size conditioning reaches the UNet');
    const bad = cli([...common, '--original-size', '128']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--original-size must be WIDTHxHEIGHT in pixels, e.g. 1024x1024, got '128'/);
    const info = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), 'info', fixture('embeddings', 'tinyxlstyle.safetensors')], { encoding: 'utf8' });
    assert.match(info.stdout, /family: embedding\n {2}loads as: a textual-inversion embedding: put it in a folder given with --embeddings DIR/);
    const lora = cli([...common, '--refiner', fixture('lora', 'tiny-sdxl-kohya.safetensors')]);
    assert.match(lora.stderr, /--refiner .*tiny-sdxl-kohya\.safetensors is not an SDXL refiner \(it looks like lora\)/);
    assert.doesNotMatch(lora.stderr, /\d+\/\d+ \[/, 'refused before any step');
    const refinerOnly = cli([...common, '--aesthetic-score', '7']);
    assert.match(refinerOnly.stderr, /--aesthetic-score is not conditioning of this model \(it takes original_size, crop_coords_top_left, target_size\)/);
  });

  it('SDXL options are checked before any work', async function () {
    const job = { prompt: 'a cat', width: 64, height: 64, steps: 4, decode: false } as const;
    await assert.rejects(base.generate({ ...job, aestheticScore: 5 }), /aestheticScore is not conditioning of this model/);
    await assert.rejects(refiner.generate({ ...job, targetSize: { width: 64, height: 64 } }), /targetSize is not conditioning of this model/);
    await assert.rejects(base.generate({ ...job, originalSize: { width: -1, height: 64 } }), /originalSize must be \{ width, height \} in whole pixels/);
    await assert.rejects(base.generate({ ...job, denoisingEnd: 1 }), /denoisingEnd must be a fraction of the schedule in \(0, 1\)/);
    await assert.rejects(base.generate({ ...job, denoisingStart: 0.5 }), /denoisingStart continues a run handed over by another model: pass its latents as initLatents/);
    await assert.rejects(base.generate({ ...job, denoisingStart: 0.5, image: fixture('img2img-init.png') }), /pass its latents as initLatents .*, and no image/);
    await assert.rejects(base.generate({ ...job, sampler: 'heun', denoisingEnd: 0.8 }), /sampler 'heun' takes two model evaluations per step/);
    await assert.rejects(base.generate({ ...job, steps: 2, denoisingEnd: 0.1 }), /a hand-off that ends at 0\.1 \(denoisingStart\/denoisingEnd, refiner\.switchAt\) leaves no step of 2 to run/);
    await assert.rejects(base.generate({ ...job, refiner: { pipeline: refiner, switchAt: 1.5 } }), /refiner\.switchAt must be in \(0, 1\)/);
    await assert.rejects(base.generate({ ...job, clipSkip: 12 }), /clipSkip must be at most 1 for this text encoder/);
    const sd1 = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    try {
      await assert.rejects(sd1.generate({ ...job, originalSize: { width: 64, height: 64 } }), /originalSize is not conditioning of this model \(SDXL models only\)/);
      await assert.rejects(sd1.generate({ ...job, refiner: { pipeline: refiner } }), /generate\(\): refiner applies to SDXL models; this one is tiny test model \(SD 1\.x structure\)/);
      await assert.rejects(base.generate({ ...job, refiner: { pipeline: sd1 } }), /refiner\.pipeline must be an SDXL refiner \(or another SDXL model\) sharing this model's latent space; it is tiny test model \(SD 1\.x structure\)/);
    } finally {
      sd1.dispose();
    }
  });

  it('the SDXL VAE in fp16: a decode that overflows is redone in fp32; vae: swaps in another SDXL VAE (the fp16-fix) by file', async function () {
    const half = await sd.loadPipeline(files['tiny-sdxl']!, { device: 'cpu', dtype: 'float16' });
    try {
      const z = sd.randn([1, 4, 8, 8], new sd.Generator(3)).mul(5e4);
      assert.equal((await half.vae.decode(z.div(half.family.latentScale))).allFinite(), false, 'the test needs an fp16 overflow to begin with');
      assert.ok((await half.decode(z)).allFinite());
      assert.equal(half.model.info().vaeDtype, 'float32');
    } finally {
      half.dispose();
    }
    // A VAE file with bare encoder.*/decoder.* keys (how the fp16-fix VAE is published), other weights than the checkpoint's.
    const vaeKeys = Object.entries(manifest('tiny-sdxl')).filter(([k]) => k.startsWith('first_stage_model.'));
    const drawn = drawManifest(Object.fromEntries(vaeKeys), 99);
    const vaeFile = path.join(tmp.dir, 'tiny-sdxl-vae-fix.safetensors');
    await sd.saveTensors(vaeFile, Object.fromEntries(Object.entries(drawn).map(([k, t]) => [k.slice('first_stage_model.'.length), t])));
    const swapped = await sd.loadPipeline(files['tiny-sdxl']!, { device: 'cpu', vae: vaeFile });
    const merged = path.join(tmp.dir, 'tiny-sdxl-merged.safetensors');
    await sd.saveTensors(merged, { ...drawManifest(manifest('tiny-sdxl')), ...drawn });
    const same = await sd.loadPipeline(merged, { device: 'cpu' });
    try {
      const z = sd.randn([1, 4, 8, 8], new sd.Generator(4));
      assert.equal((await swapped.vae.decode(z)).sub(await same.vae.decode(z)).norm(), 0);
      assert.ok((await swapped.vae.decode(z)).sub(await base.vae.decode(z)).norm() > 0);
    } finally {
      swapped.dispose();
      same.dispose();
    }
  });

  it('with a refiner the infotext is the base run\'s (its prompt, LoRA hashes, strength) plus the refiner keys; misuse is refused before the base pass', async function () {
    const lora = path.dirname(fixture('lora', 'tiny-sdxl-kohya.safetensors'));
    const job = { prompt: 'a cat <lora:tiny-sdxl-kohya:0.5>', loraDirs: [lora], steps: 5, sampler: 'euler', seed: 5, width: 64, height: 64 };
    const r = await base.generate({ ...job, refiner: { pipeline: refiner, switchAt: 0.6 } });
    assert.match(r.infotexts[0]!, /^a cat <lora:tiny-sdxl-kohya:0\.5>\n/);
    assert.match(r.infotexts[0]!, /Model: tiny-sdxl, Lora hashes: "tiny-sdxl-kohya: [0-9a-f]{12}", Refiner: tiny-sdxl-refiner \[[0-9a-f]{10}\], Refiner switch at: 0\.6$/);
    const i2i = await base.generate({ ...job, image: fixture('img2img-init.png'), strength: 0.5, refiner: { pipeline: refiner } });
    assert.match(i2i.infotexts[0]!, /Denoising strength: 0\.5, .*Refiner switch at: 0\.8$/);
    // the refiner's progress counts on after the base's, to one total
    let base0 = 0;
    const steps: number[] = [];
    await base.generate({ ...job, refiner: { pipeline: refiner }, onProgress: (p) => void (steps.push(p.step), (base0 = p.total)) });
    assert.deepEqual(steps, Array.from({ length: base0 }, (_, i) => i + 1));
    let calls = 0;
    const progress = () => void calls++;
    await assert.rejects(base.generate({ ...job, onProgress: progress, refiner: { pipeline: base } }), /refiner\.pipeline is the base pipeline itself/);
    await assert.rejects(base.generate({ ...job, onProgress: progress, refiner: { pipeline: {} as sd.Pipeline } }), /refiner\.pipeline must be a pipeline from loadPipeline/);
    assert.equal(calls, 0, 'refused before the base pass');
    // a loader's result is checked when it comes, and not disposed when it is the base
    await assert.rejects(base.generate({ ...job, refiner: { pipeline: async () => base } }), /refiner\.pipeline is the base pipeline itself/);
    await assert.rejects(base.generate({ ...job, refiner: { pipeline: async () => 42 as unknown as sd.Pipeline } }), /refiner\.pipeline must be a pipeline from loadPipeline/);
    // the base is still usable (and, without the tag, its own weights again for the tests after this one)
    assert.equal((await base.generate({ ...job, prompt: 'a cat', steps: 2, decode: false })).latents.shape.length, 4);
    await assert.rejects(refiner.generate({ ...job, loraDirs: [], prompt: 'a cat', initLatents: sd.randn([1, 4, 8, 8], new sd.Generator(1)), denoisingStart: 0.8 }), /initLatents are 16x16 pixels of latents; width\/height say 64x64/);
  });

  it('an SD 1.x LoRA on SDXL is refused by its context width, not half applied', async function () {
    const tinyLora = path.join(tmp.dir, 'sd1-lora.safetensors');
    // a kohya module for a 32-wide (tiny SD 1.x) cross-attention context
    await sd.saveTensors(tinyLora, {
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': sd.randn([4, 32], new sd.Generator(1)),
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': sd.randn([64, 4], new sd.Generator(2)),
    });
    await assert.rejects(base.generate({ prompt: 'a cat', steps: 2, width: 64, height: 64, loras: [{ path: tinyLora, weight: 1 }] }), /looks like a LoRA for a model with a 32-wide text context .*this model is tiny test model \(SDXL structure\) \(72-wide context\)/);
  });

  it('the service: A1111\'s refiner_checkpoint and refiner_switch_at run the refiner; an unknown refiner is a 404', async function () {
    const models = path.join(tmp.dir, 'models', 'Stable-diffusion');
    fs.mkdirSync(models, { recursive: true });
    for (const preset of ['tiny-sdxl', 'tiny-sdxl-refiner']) fs.copyFileSync(files[preset]!, path.join(models, `${preset}.safetensors`));
    const server = await startServer({ models: path.dirname(models), port: 0, device: 'cpu' });
    try {
      await server.models.hashing;
      const post = async (body: object) => {
        const r = await fetch(`${server.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: r.status, json: (await r.json()) as Record<string, unknown> };
      };
      const job = { prompt: 'a photo of a cat', negative_prompt: 'blurry', steps: 5, cfg_scale: 6, seed: 9, width: 64, height: 64, sampler_name: 'Euler', override_settings: { sd_model_checkpoint: 'tiny-sdxl' } };
      const r = await post({ ...job, refiner_checkpoint: 'tiny-sdxl-refiner', refiner_switch_at: 0.6 });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const lib = await base.generate({ prompt: 'a photo of a cat', negativePrompt: 'blurry', steps: 5, cfgScale: 6, seed: 9, width: 64, height: 64, sampler: 'Euler', refiner: { pipeline: refiner, switchAt: 0.6 } });
      assert.equal((r.json['images'] as string[])[0], lib.images[0]!.toString('base64'));
      assert.match(JSON.parse(r.json['info'] as string).infotexts[0], /Refiner: tiny-sdxl-refiner \[[0-9a-f]{10}\], Refiner switch at: 0\.6$/);
      assert.equal((await post({ ...job, refiner_checkpoint: 'nope' })).status, 404);
      assert.equal((await post({ ...job, refiner_checkpoint: 'tiny-sdxl-refiner', refiner_switch_at: 1 })).status, 422);
    } finally {
      await server.close(1000);
    }
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
