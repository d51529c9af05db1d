// SD 2.x (512 epsilon, 768 v), inpainting (9-channel UNets, and masks on a 4-channel one), a VAE from
// its own file, and diffusers folders (issue #13): parity with diffusers, fp32 CPU, on random weights
// in the real layouts (test/fixtures/sd2-reference.*, scripts/make_sd2_reference.py; the files of
// scripts/make_random_checkpoints.py) and on the tiny preset (tiny-inpaint-reference.*,
// scripts/make_tiny_inpaint_fixture.py); the tiny diffusers folders (scripts/make_diffusers_tiny.py)
// against the tiny single-file checkpoint; detection as `sdtorch info` prints it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import type { GenerateOptions } from '../lib';
import { fixture, relErrTensor as relErr, tmpDir } from './helpers';
import { native } from '../lib/native/load';
import { randomTensors, tinyCheckpoint, tinyInpaintCheckpoint } from './tiny';
import { ensureFamilyWeights, ensureWeights, repoRoot, type FamilyWeight } from './weights';

/** One pipeline run of a reference, in sdtorch's option names (image and mask: files under test/fixtures). */
interface ReferenceCase {
  sdtorch: Omit<GenerateOptions, 'image' | 'mask'> & { image?: string; mask?: string };
  model: string;
  vae: string | null;
  prediction: 'epsilon' | 'v';
  shape: number[];
}

/** test/fixtures/NAME.json (how each entry was made) + NAME.safetensors (the tensors, read once). */
class Reference {
  private tensors?: Record<string, sd.Tensor>;
  private readonly cases: Record<string, ReferenceCase>;
  constructor(private readonly name: string) {
    this.cases = (JSON.parse(fs.readFileSync(fixture(`${name}.json`), 'utf8')) as { cases: Record<string, ReferenceCase> }).cases;
  }

  async get(key: string): Promise<sd.Tensor> {
    this.tensors ??= await sd.loadTensors(fixture(`${this.name}.safetensors`));
    const t = this.tensors[key];
    assert.ok(t, `no '${key}' in ${this.name}.safetensors`);
    return t;
  }

  options(key: string): GenerateOptions {
    const c = this.cases[key];
    assert.ok(c, `no case '${key}' in ${this.name}.json`);
    const { image, mask, ...rest } = c.sdtorch;
    return { ...rest, ...(image ? { image: fixture(image) } : {}), ...(mask ? { mask: fixture(mask) } : {}) };
  }

  /** generate() with the case's settings: final latents within 1e-3 of diffusers'. */
  async sameLatents(pipe: sd.Pipeline, key: string): Promise<void> {
    const r = await pipe.generate(this.options(key));
    const expected = await this.get(key);
    assert.deepEqual(r.latents.shape, expected.shape);
    const e = relErr(r.latents, expected);
    assert.ok(e < 1e-3, `${key}: relative error ${e}`);
  }
}
const reference = new Reference('sd2-reference');
const ref = (key: string) => reference.get(key);
const sameLatents = (pipe: sd.Pipeline, key: string) => reference.sameLatents(pipe, key);

/** A network's output within 1e-4 of the reference's. */
function within(actual: sd.Tensor, expected: sd.Tensor): void {
  assert.deepEqual(actual.shape, expected.shape);
  const e = relErr(actual, expected);
  assert.ok(e < 1e-4, `relative error ${e}`);
}

/** Loads one random checkpoint (made if missing) per describe, disposed after it. */
function withPipeline(name: FamilyWeight | 'sd15', options: () => Omit<sd.LoadOptions, 'device'> = () => ({})) {
  const holder: { pipe?: sd.Pipeline } = {};
  before(async function () {
    const file = name === 'sd15' ? ensureWeights().safetensors : ensureFamilyWeights(name)[name];
    holder.pipe = await sd.loadPipeline(file, { device: 'cpu', ...options() });
  });
  after(() => holder.pipe?.dispose());
  return () => holder.pipe!;
}

describe('tiny inpainting matches diffusers (every noise-draw order, fast)', function () {
  const tinyRef = new Reference('tiny-inpaint-reference');
  let pipe: sd.Pipeline;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyInpaintCheckpoint(), { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  it('a tiny checkpoint with a 9-channel UNet input is tiny-inpaint', function () {
    assert.equal(pipe.family.name, 'tiny-inpaint');
    assert.equal(pipe.family.unetInChannels, 9);
    assert.equal(pipe.family.latentChannels, 4);
  });

  it('its UNet asks for the 5 extra channels by name', async function () {
    const g = new sd.Generator(3);
    const [x, ctx] = [g.randn([1, 4, 8, 8]), g.randn([1, 77, 32])];
    await assert.rejects(pipe.unet.forward(x, 500, ctx), /takes 9 input channels: pass concat with the 5 extra channels/);
    await assert.rejects(pipe.unet.forward(x, 500, { context: ctx, concat: g.randn([1, 4, 8, 8]) }), /concat must have 5 channels .*got 4/);
  });

  it('UNet with concat: within 1e-4', async function () {
    const out = await pipe.unet.forward(await tinyRef.get('tinyinpaint.unet.x'), await tinyRef.get('tinyinpaint.unet.t'), {
      context: await tinyRef.get('tinyinpaint.unet.ctx'),
      concat: await tinyRef.get('tinyinpaint.unet.concat'),
    });
    within(out, await tinyRef.get('tinyinpaint.unet.out'));
  });

  for (const key of ['inpaint.tinyinpaint.euler_a.s100', 'inpaint.tinyinpaint.ddim.s075', 'inpaint.tinyinpaint.euler.mask32x48']) {
    it(`${key}: final latents within 1e-3`, async function () {
      await tinyRef.sameLatents(pipe, key);
    });
  }

  for (const key of ['inpaint4ch.tiny.euler_a.s075', 'inpaint4ch.tiny.ddim.s100']) {
    it(`${key} (a mask on the 4-channel tiny model): final latents within 1e-3`, async function () {
      const plain = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
      try {
        assert.equal(plain.family.unetInChannels, 4);
        await tinyRef.sameLatents(plain, key);
      } finally {
        plain.dispose();
      }
    });
  }
});

describe('diffusers folders load as the single file they came from (tiny preset)', function () {
  let single: sd.Pipeline;
  let tmp: ReturnType<typeof tmpDir>;
  before(async function () {
    tmp = tmpDir('sdtorch-folders-');
    // The folders hold the tiny checkpoint's weights in float16: compare with the same file cast likewise.
    const half = Object.fromEntries(Object.entries(randomTensors()).map(([k, t]) => [k, t.dtype === 'float32' ? t.to('cpu', 'float16') : t]));
    const file = path.join(tmp.dir, 'tiny-random-1234.fp16.safetensors');
    await sd.saveTensors(file, half);
    single = await sd.loadPipeline(file, { device: 'cpu' });
  });
  after(() => {
    single?.dispose();
    tmp?.cleanup();
  });

  for (const folder of ['diffusers-tiny-safetensors', 'diffusers-tiny-bin']) {
    it(`${folder}: the tiny family, bit-identical weights and the same latents`, async function () {
      const pipe = await sd.loadPipeline(fixture(folder), { device: 'cpu' });
      try {
        assert.equal(pipe.family.name, 'tiny');
        for (const component of ['textEncoder', 'unet', 'vae'] as const) {
          const want = new Map(await single.model.parameters({ component }));
          const got = await pipe.model.parameters({ component });
          assert.deepEqual(got.map(([k]) => k).sort(), [...want.keys()].sort(), component);
          for (const [k, t] of got) {
            const w = new sd.Tensor(want.get(k)!);
            assert.deepEqual(t.shape, w.shape, k);
            assert.equal(new sd.Tensor(t).sub(w).norm(), 0, k);
          }
        }
        const job = { prompt: 'a photo of a cat', width: 16, height: 16, steps: 3, seed: 5, decode: false } as const;
        const [a, b] = [await pipe.generate(job), await single.generate(job)];
        assert.equal(relErr(a.latents, b.latents), 0);
      } finally {
        pipe.dispose();
      }
    });
  }
});

describe('diffusers folders as people have them, and folder errors (tiny preset)', function () {
  let tmp: ReturnType<typeof tmpDir>;
  let reference: sd.Pipeline;
  before(async function () {
    tmp = tmpDir('sdtorch-folder-variants-');
    reference = await sd.loadPipeline(fixture('diffusers-tiny-safetensors'), { device: 'cpu' });
  });
  after(() => {
    reference?.dispose();
    tmp?.cleanup();
  });
  const copy = (name: string) => {
    const dir = path.join(tmp.dir, name);
    fs.cpSync(fixture('diffusers-tiny-safetensors'), dir, { recursive: true });
    return dir;
  };
  const sameWeights = async (pipe: sd.Pipeline) => {
    for (const component of ['textEncoder', 'unet', 'vae'] as const) {
      const want = new Map(await reference.model.parameters({ component }));
      for (const [k, t] of await pipe.model.parameters({ component })) assert.equal(new sd.Tensor(t).sub(new sd.Tensor(want.get(k)!)).norm(), 0, k);
    }
  };

  it('transformers 5 text encoder keys (no text_model.), an fp16 variant file name and a sharded text encoder load the same weights', async function () {
    const dir = copy('variants');
    // transformers 5 writes CLIPTextModel without the `text_model.` prefix; shard it in two with an index.
    const te = await sd.loadTensors(path.join(dir, 'text_encoder', 'model.safetensors'));
    fs.rmSync(path.join(dir, 'text_encoder', 'model.safetensors'));
    const names = Object.keys(te);
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await sd.saveTensors(path.join(dir, 'text_encoder', file), Object.fromEntries(part.map((k) => [k.replace(/^text_model\./, ''), te[k]!])));
      for (const k of part) weightMap[k.replace(/^text_model\./, '')] = file;
    }
    fs.writeFileSync(path.join(dir, 'text_encoder', 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    fs.renameSync(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), path.join(dir, 'unet', 'diffusion_pytorch_model.fp16.safetensors'));
    const pipe = await sd.loadPipeline(dir, { device: 'cpu' });
    try {
      await sameWeights(pipe);
    } finally {
      pipe.dispose();
    }
  });

  it('a folder without model_index.json, or without UNet weights, is refused saying what is missing', async function () {
    const bare = copy('no-index');
    fs.rmSync(path.join(bare, 'model_index.json'));
    await assert.rejects(sd.loadPipeline(bare, { device: 'cpu' }), /without model_index\.json.*diffusers folder/);
    const partial = copy('no-unet');
    fs.rmSync(path.join(partial, 'unet', 'diffusion_pytorch_model.safetensors'));
    await assert.rejects(sd.loadPipeline(partial, { device: 'cpu' }), /unet' has no diffusion_pytorch_model\.safetensors.*incomplete/);
  });

  it("a prediction the folder's scheduler names but sdtorch does not know is an error naming it; the prediction option overrides it", async function () {
    const dir = copy('sample-prediction');
    const config = path.join(dir, 'scheduler', 'scheduler_config.json');
    fs.writeFileSync(config, JSON.stringify({ ...JSON.parse(fs.readFileSync(config, 'utf8')), prediction_type: 'sample' }));
    await assert.rejects(sd.loadPipeline(dir, { device: 'cpu' }), /says its prediction is 'sample' \(scheduler_config\.json prediction_type\).*pass prediction: 'epsilon' or 'v'/);
    const pipe = await sd.loadPipeline(dir, { device: 'cpu', prediction: 'epsilon' });
    assert.equal(pipe.family.prediction, 'epsilon');
    pipe.dispose();
  });

  it('model_index.json must name an SD 1.x/2.x/SDXL pipeline: other pipelines, broken JSON and missing parts are refused by name', async function () {
    const flux = copy('flux');
    fs.writeFileSync(path.join(flux, 'model_index.json'), JSON.stringify({ _class_name: 'FluxPipeline', transformer: ['diffusers', 'FluxTransformer2DModel'] }));
    await assert.rejects(sd.loadPipeline(flux, { device: 'cpu' }), /is a FluxPipeline folder; sdtorch loads SD 1\.x, SD 2\.x and SDXL pipelines/);
    const broken = copy('broken-index');
    fs.writeFileSync(path.join(broken, 'model_index.json'), '{ "_class_name": "StableDiffusionPipeline",');
    await assert.rejects(sd.loadPipeline(broken, { device: 'cpu' }), /model_index\.json' is not valid JSON/);
    const noVae = copy('no-vae');
    fs.rmSync(path.join(noVae, 'vae'), { recursive: true });
    await assert.rejects(sd.loadPipeline(noVae, { device: 'cpu' }), /has no vae\/ folder: the diffusers folder is incomplete/);
  });

  it("vae: a diffusers AutoencoderKL file loads in place of the checkpoint's VAE", async function () {
    const half = Object.fromEntries(Object.entries(randomTensors(undefined, 99)).map(([k, t]) => [k, t.dtype === 'float32' ? t.to('cpu', 'float16') : t]));
    const file = path.join(tmp.dir, 'other-seed.safetensors');
    await sd.saveTensors(file, half);
    const pipe = await sd.loadPipeline(file, { device: 'cpu', vae: fixture('diffusers-tiny-safetensors/vae/diffusion_pytorch_model.safetensors') });
    try {
      assert.equal(pipe.model.info().vae, fixture('diffusers-tiny-safetensors/vae/diffusion_pytorch_model.safetensors'));
      const want = new Map(await reference.model.parameters({ component: 'vae' }));
      for (const [k, t] of await pipe.model.parameters({ component: 'vae' })) assert.equal(new sd.Tensor(t).sub(new sd.Tensor(want.get(k)!)).norm(), 0, k);
    } finally {
      pipe.dispose();
    }
  });

  it('vae: a VAE of another family, a file without a VAE, or a folder is refused naming the file', async function () {
    const vae = Object.fromEntries(Object.entries(randomTensors()).filter(([k]) => k.startsWith('first_stage_model.')));
    vae['first_stage_model.decoder.conv_in.weight'] = new sd.Generator(1).randn([64, 16, 3, 3]);
    const sixteen = path.join(tmp.dir, 'sixteen-channel-vae.safetensors');
    await sd.saveTensors(sixteen, vae);
    const checkpoint = await tinyCheckpoint();
    await assert.rejects(sd.loadPipeline(checkpoint, { device: 'cpu', vae: sixteen }), /sixteen-channel-vae\.safetensors' is not a VAE for .*latents have 16 channels, this model's have 4/);
    const lora = path.join(tmp.dir, 'not-a-vae.safetensors');
    await sd.saveTensors(lora, { 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': new sd.Generator(1).randn([4, 32]) });
    await assert.rejects(sd.loadPipeline(checkpoint, { device: 'cpu', vae: lora }), /not-a-vae\.safetensors' holds no VAE weights .* looks like a LoRA/);
    await assert.rejects(sd.loadPipeline(checkpoint, { device: 'cpu', vae: tmp.dir }), /is a folder; give the VAE file itself/);
  });
});

describe('SD 2.1 768-v (random fp16 file, fp32 CPU) matches diffusers', function () {
  const pipe = withPipeline('sd21-v');

  it('is detected as sd2-v: v prediction, 768 pixels, a 1024-wide text encoder, 4 UNet input channels', function () {
    const f = pipe().family;
    assert.equal(f.name, 'sd2-v');
    assert.equal(f.prediction, 'v');
    assert.equal(f.defaultSize, 768);
    assert.equal(f.unetInChannels, 4);
    assert.equal(f.contextDim, 1024);
    assert.equal(f.textEncoders[0]?.width, 1024);
  });

  it("tokenizer pads with '!' (id 0) after <|endoftext|>, as SD 2's", async function () {
    const ids = pipe().tokenizer.encode(['a photo of a cat', 'an astronaut riding a horse on the moon, highly detailed']);
    assert.deepEqual(Array.from(ids.toArray() as BigInt64Array), Array.from((await ref('sd21v.text.ids')).toArray() as BigInt64Array));
  });

  it('text encoder (OpenCLIP penultimate layer + ln_final): within 1e-4', async function () {
    within(await pipe().textEncoder.forward(await ref('sd21v.text.ids')), await ref('sd21v.text.out'));
  });

  it('UNet (linear projections, 1024-wide context): within 1e-4', async function () {
    const out = await pipe().unet.forward(await ref('sd21v.unet.x'), await ref('sd21v.unet.t'), await ref('sd21v.unet.ctx'));
    within(out, await ref('sd21v.unet.out'));
  });

  for (const key of ['txt2img.sd21v.euler', 'txt2img.sd21v.dpmpp_2m']) {
    it(`${key} (96x64, 8 steps): final latents within 1e-3`, async function () {
      await sameLatents(pipe(), key);
    });
  }

  for (const key of ['txt2img.sd21v.ddim.zsnr_rescale', 'txt2img.sd21v.euler.zsnr_rescale']) {
    it(`${key} (rescaleCfg 0.7, zero terminal SNR, trailing timesteps): final latents within 1e-3`, async function () {
      await sameLatents(pipe(), key);
    });
  }
});

describe('SD 2.1 512 base (.ckpt with global_step 875000) matches diffusers', function () {
  const pipe = withPipeline('sd21-base');

  it('is detected as sd2: epsilon prediction, 512 pixels', function () {
    const f = pipe().family;
    assert.equal(f.name, 'sd2');
    assert.equal(f.prediction, 'epsilon');
    assert.equal(f.defaultSize, 512);
    assert.equal(f.unetInChannels, 4);
  });

  it('txt2img.sd21base.euler_a: final latents within 1e-3', async function () {
    await sameLatents(pipe(), 'txt2img.sd21base.euler_a');
  });
});

describe("prediction: 'v' overrides the detection", function () {
  const pipe = withPipeline('sd21-base', () => ({ prediction: 'v' }));

  it("the .ckpt's tensors as a v model give the 768-v file's latents", async function () {
    assert.equal(pipe().family.prediction, 'v');
    // The override picks the SD 2.x row, default size included.
    assert.equal(pipe().family.name, 'sd2-v');
    assert.equal(pipe().family.defaultSize, 768);
    await sameLatents(pipe(), 'txt2img.sd21v.euler');
  });
});

describe('SD 1.5 inpainting (9-channel UNet) matches diffusers', function () {
  const pipe = withPipeline('sd15-inpaint');

  it('is detected as sd15-inpaint: 9 UNet input channels, epsilon, 512 pixels', function () {
    const f = pipe().family;
    assert.equal(f.name, 'sd15-inpaint');
    assert.equal(f.unetInChannels, 9);
    assert.equal(f.latentChannels, 4);
    assert.equal(f.prediction, 'epsilon');
    assert.equal(f.defaultSize, 512);
  });

  it('UNet with the mask and masked-image latents concatenated: within 1e-4', async function () {
    const out = await pipe().unet.forward(await ref('sd15inpaint.unet.x'), await ref('sd15inpaint.unet.t'), {
      context: await ref('sd15inpaint.unet.ctx'),
      concat: await ref('sd15inpaint.unet.concat'),
    });
    within(out, await ref('sd15inpaint.unet.out'));
  });

  for (const key of ['inpaint.sd15inpaint.euler_a.s100', 'inpaint.sd15inpaint.euler.s075']) {
    it(`${key}: final latents within 1e-3`, async function () {
      await sameLatents(pipe(), key);
    });
  }

  it('inpaint.sd15inpaint.ddim.mask32x48: a 32x48 mask is resized to the image as diffusers does', async function () {
    await sameLatents(pipe(), 'inpaint.sd15inpaint.ddim.mask32x48');
  });
});

describe('SD 2 inpainting (9-channel UNet, OpenCLIP) matches diffusers', function () {
  const pipe = withPipeline('sd2-inpaint');

  it('is detected as sd2-inpaint: 9 UNet input channels, epsilon, 512 pixels', function () {
    const f = pipe().family;
    assert.equal(f.name, 'sd2-inpaint');
    assert.equal(f.unetInChannels, 9);
    assert.equal(f.prediction, 'epsilon');
    assert.equal(f.defaultSize, 512);
    assert.equal(f.contextDim, 1024);
  });

  it('UNet with concat: within 1e-4', async function () {
    const out = await pipe().unet.forward(await ref('sd2inpaint.unet.x'), await ref('sd2inpaint.unet.t'), {
      context: await ref('sd2inpaint.unet.ctx'),
      concat: await ref('sd2inpaint.unet.concat'),
    });
    within(out, await ref('sd2inpaint.unet.out'));
  });

  it('inpaint.sd2inpaint.euler_a.s075: final latents within 1e-3', async function () {
    await sameLatents(pipe(), 'inpaint.sd2inpaint.euler_a.s075');
  });
});

describe('a mask on a 4-channel model (SD 1.5): diffusers keeps the unmasked latents each step', function () {
  const pipe = withPipeline('sd15');

  for (const key of ['inpaint4ch.sd15.ddim.s075', 'inpaint4ch.sd15.euler_a.s075']) {
    it(`${key}: final latents within 1e-3`, async function () {
      await sameLatents(pipe(), key);
    });
  }
});

describe('a VAE from its own file (vae: FILE) replaces the checkpoint VAE', function () {
  const pipe = withPipeline('sd15', () => ({ vae: ensureFamilyWeights('vae').vae }));

  it('encode: mean and logvar within 1e-4', async function () {
    const [mean, logvar] = (await pipe().vae.encode(await ref('vae4321.image'))).chunk(2, 1);
    within(mean!, await ref('vae4321.mean'));
    within(logvar!, await ref('vae4321.logvar'));
  });

  it('decode: within 1e-4', async function () {
    within(await pipe().vae.decode(await ref('vae4321.z')), await ref('vae4321.decoded'));
  });

  it('img2img.sd15.vae4321.euler (strength 0.6): final latents within 1e-3', async function () {
    await sameLatents(pipe(), 'img2img.sd15.vae4321.euler');
  });

  it("every VAE weight is the VAE file's (cast from fp16)", async function () {
    const file = await sd.loadTensors(ensureFamilyWeights('vae').vae);
    const got = await pipe().model.parameters({ component: 'vae' });
    assert.equal(got.length, Object.keys(file).length);
    for (const [k, t] of got) {
      const w = file[k.replace(/^first_stage_model\./, '')];
      assert.ok(w, `${k} is not in the VAE file`);
      assert.equal(new sd.Tensor(t).sub(w.to('cpu', 'float32')).norm(), 0, k);
    }
  });
});

describe('detection names each family and its prediction (inspectFile, sdtorch info)', function () {
  // [file, what it looks like, the preset it loads as, its prediction]
  const expected: Array<[FamilyWeight, string, string | null, 'epsilon' | 'v' | null]> = [
    ['sd21-v', 'sd2', 'sd2-v', 'v'],
    ['sd21-base', 'sd2', 'sd2', 'epsilon'], // the .ckpt's global_step 875000
    ['sd15-inpaint', 'sd1-inpaint', 'sd15-inpaint', 'epsilon'],
    ['sd2-inpaint', 'sd2-inpaint', 'sd2-inpaint', 'epsilon'],
    ['vae', 'vae', null, null],
  ];
  for (const [name, kind, preset, prediction] of expected) {
    it(`${name}: looks like ${kind}, loads as ${preset ?? 'nothing'}${prediction ? ` (${prediction})` : ''}`, async function () {
      const f = await native().inspectFile({ path: ensureFamilyWeights(name)[name] });
      assert.deepEqual([f.family, f.preset, f.prediction], [kind, preset, prediction]);
    });
  }

  for (const folder of ['diffusers-tiny-safetensors', 'diffusers-tiny-bin']) {
    it(`${folder}: a diffusers folder of the tiny preset (epsilon)`, async function () {
      const f = await native().inspectFile({ path: fixture(folder) });
      assert.deepEqual([f.format, f.preset, f.prediction], ['diffusers', 'tiny', 'epsilon']);
    });
  }

  it('sdtorch info prints the preset and the prediction', function () {
    const cli = path.join(repoRoot, 'dist', 'cli.js');
    assert.ok(fs.existsSync(cli), 'dist/cli.js is missing: run npm run build:ts first');
    const info = (file: string) => {
      const r = spawnSync(process.execPath, [cli, 'info', file], { encoding: 'utf8', timeout: 300000 });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    const w = ensureFamilyWeights('sd21-v', 'sd21-base');
    assert.match(info(w['sd21-v']), /preset sd2-v\b.*v-prediction/);
    assert.match(info(w['sd21-base']), /preset sd2\b(?!-).*epsilon/);
  });
});
