// LoRA and LyCORIS: the merged weights against torch's definitions (tiny LoHa, LoKr and LoCon files,
// scripts/make_lora_fixture.py), the name map against diffusers' own conversion, parity with diffusers
// on the random SD 1.5 checkpoint, exact restore, errors, and A1111's LoRA hash.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import type { NativeModel } from '../lib/native/binding';
import { fixture, relErrTensor as relErr, tmpDir } from './helpers';
import { diffusersModule, fingerprint, kohyaLora, peftLora, sd15Layers } from './lora-files';
import { tinyCheckpoint } from './tiny';
import { ensureWeights } from './weights';

const lora = (...parts: string[]) => fixture('lora', ...parts);

/** The text encoder's and UNet's weights now, by checkpoint key. */
async function weights(model: NativeModel): Promise<Map<string, sd.Tensor>> {
  const out = new Map<string, sd.Tensor>();
  for (const component of ['textEncoder', 'unet'] as const)
    for (const [k, t] of await model.parameters({ component })) out.set(k, new sd.Tensor(t));
  return out;
}

/** Keys whose tensors differ between two weight maps (compared exactly). */
function changed(a: Map<string, sd.Tensor>, b: Map<string, sd.Tensor>): string[] {
  return [...a.keys()].filter((k) => a.get(k)!.sub(b.get(k)!).norm() !== 0);
}

describe('LoRA weights (tiny checkpoint)', function () {
  let pipe: sd.Pipeline;
  let base: Map<string, sd.Tensor>;
  let expected: Record<string, sd.Tensor>;
  let dir: ReturnType<typeof tmpDir>;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    base = await weights(pipe.model);
    expected = await sd.loadTensors(lora('tiny-expected.safetensors'));
    dir = tmpDir('sdtorch-lora-');
  });
  afterEach(async () => {
    await sd.setLoras(pipe.model, []);
  });
  after(() => {
    pipe?.dispose();
    dir?.cleanup();
  });

  const files = { 'tiny-loha': 0.7, 'tiny-lokr': 1.3, 'tiny-locon-tucker': -0.5 } as const;
  for (const [file, weight] of Object.entries(files)) {
    it(`${file}: the merged weights equal torch's definition (rel. error < 1e-6), and nothing else changes`, async function () {
      const r = await sd.setLoras(pipe.model, [{ path: lora(`${file}.safetensors`), weight }]);
      const want = Object.entries(expected).filter(([k]) => k.startsWith(`${file}/`));
      assert.deepEqual(r.applied, [{ name: file, path: lora(`${file}.safetensors`), weight, modules: want.length, unmatched: [] }]);
      assert.equal(r.weights.patched, want.length);
      const now = await weights(pipe.model);
      for (const [k, t] of want) {
        const e = relErr(now.get(k.slice(file.length + 1))!, t);
        assert.ok(e < 1e-6, `${k}: relative error ${e}`);
      }
      assert.deepEqual(changed(now, base).sort(), want.map(([k]) => k.slice(file.length + 1)).sort());
    });
  }

  it('[] gives back the base weights bit for bit, each aliasing the checkpoint file again', async function () {
    const on = await sd.setLoras(pipe.model, [{ path: lora('tiny-loha.safetensors'), weight: 0.7 }]);
    assert.equal(on.weights.mapped, on.weights.total - 4);
    const off = await sd.setLoras(pipe.model, []);
    assert.deepEqual(off.applied, []);
    assert.deepEqual(off.weights, { total: base.size, patched: 0, mapped: base.size });
    assert.deepEqual(changed(await weights(pipe.model), base), []);
  });

  it('switching sets recomputes from the originals; two files on one layer add up', async function () {
    const loha = { path: lora('tiny-loha.safetensors'), weight: 0.7 };
    const lokr = { path: lora('tiny-lokr.safetensors'), weight: 1.3 };
    await sd.setLoras(pipe.model, [loha]);
    await sd.setLoras(pipe.model, [lokr]);
    const switched = await weights(pipe.model);
    await sd.setLoras(pipe.model, []);
    await sd.setLoras(pipe.model, [lokr]);
    assert.deepEqual(changed(await weights(pipe.model), switched), []);

    const r = await sd.setLoras(pipe.model, [loha, lokr]);
    assert.equal(r.weights.patched, 7); // conv_in is in both
    const key = 'model.diffusion_model.input_blocks.0.0.weight';
    const b = base.get(key)!;
    const sum = expected[`tiny-loha/${key}`]!.sub(b).add(expected[`tiny-lokr/${key}`]!.sub(b)).add(b);
    assert.ok(relErr((await weights(pipe.model)).get(key)!, sum) < 1e-6);
  });

  it('asking for the same set again changes nothing and reports the same', async function () {
    const set = [{ path: lora('tiny-lokr.safetensors'), weight: 1.3 }];
    const first = await sd.setLoras(pipe.model, set);
    const before = await weights(pipe.model);
    assert.deepEqual(await sd.setLoras(pipe.model, set), first);
    assert.deepEqual(changed(await weights(pipe.model), before), []);
    // weight 0: reported, nothing changed
    const off = await sd.setLoras(pipe.model, [{ ...set[0]!, weight: 0 }]);
    assert.equal(off.applied[0]!.modules, 4);
    assert.deepEqual(off.weights.patched, 0);
  });

  it("every UNet layer: kohya's diffusers and LDM spellings and PEFT names land where diffusers' conversion says", async function () {
    // tiny-names.json: [LDM module, diffusers module] from diffusers' convert_ldm_unet_checkpoint
    const pairs = JSON.parse(fs.readFileSync(lora('tiny-names.json'), 'utf8')) as Array<[string, string]>;
    const manifest = JSON.parse(fs.readFileSync(fixture('tiny-manifest.json'), 'utf8')) as Record<string, number[]>;
    const spellings = {
      kohya: (d: string) => `lora_unet_${d.replaceAll('.', '_')}`,
      ldm: (l: string) => `lora_unet_${l.replaceAll('.', '_')}`,
      peft: (d: string) => `unet.${d}`,
    };
    const results: Array<Map<string, sd.Tensor>> = [];
    for (const [spelling, name] of Object.entries(spellings)) {
      const g = new sd.Generator(5);
      const tensors: Record<string, sd.Tensor> = {};
      for (const [ldm, diffusers] of pairs) {
        assert.equal(diffusersModule(ldm, [true, true]), diffusers); // the test helper agrees with diffusers
        const shape = manifest[`model.diffusion_model.${ldm}.weight`]!;
        const n = name(spelling === 'ldm' ? ldm : diffusers);
        const [down, up] = spelling === 'peft' ? ['lora_A', 'lora_B'] : ['lora_down', 'lora_up'];
        tensors[`${n}.${down}.weight`] = g.randn([2, ...shape.slice(1)]);
        tensors[`${n}.${up}.weight`] = g.randn([shape[0]!, 2, ...(shape.length === 4 ? [1, 1] : [])]);
      }
      const file = path.join(dir.dir, `names-${spelling}.safetensors`);
      await sd.saveTensors(file, tensors, { overwrite: true });
      const r = await sd.setLoras(pipe.model, [{ path: file, weight: 0.1 }]);
      assert.deepEqual([r.applied[0]!.modules, r.applied[0]!.unmatched], [pairs.length, []], spelling);
      const now = await weights(pipe.model);
      assert.deepEqual(changed(now, base).sort(), pairs.map(([l]) => `model.diffusion_model.${l}.weight`).sort(), spelling);
      results.push(now);
    }
    assert.deepEqual(changed(results[0]!, results[1]!), []);
    assert.deepEqual(changed(results[0]!, results[2]!), []);
  });

  it("diffusers' older attention-processor names, and PEFT names without text_model., equal kohya's", async function () {
    const g = () => new sd.Generator(9);
    const factors = (gen: sd.Generator) => [gen.randn([2, 32]), gen.randn([32, 2]), gen.randn([2, 32]), gen.randn([32, 2])];
    const [d1, u1, d2, u2] = factors(g());
    const old = {
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight': d1!,
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight': u1!,
      'text_encoder.text_model.encoder.layers.1.self_attn.to_k_lora.down.weight': d2!,
      'text_encoder.text_model.encoder.layers.1.self_attn.to_k_lora.up.weight': u2!,
    };
    const [e1, v1, e2, v2] = factors(g());
    const kohya = {
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_down.weight': e1!,
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight': v1!,
      'lora_te_text_model_encoder_layers_1_self_attn_k_proj.lora_down.weight': e2!,
      'lora_te_text_model_encoder_layers_1_self_attn_k_proj.lora_up.weight': v2!,
    };
    const [f1, w1, f2, w2] = factors(g());
    // transformers 5 names CLIP's modules without "text_model."
    const peft = {
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight': f1!,
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight': w1!,
      'text_encoder.encoder.layers.1.self_attn.k_proj.lora_A.weight': f2!,
      'text_encoder.encoder.layers.1.self_attn.k_proj.lora_B.weight': w2!,
    };
    const results = [];
    for (const [name, tensors] of Object.entries({ old, kohya, peft })) {
      const file = path.join(dir.dir, `${name}.safetensors`);
      await sd.saveTensors(file, tensors, { overwrite: true });
      assert.equal((await sd.setLoras(pipe.model, [{ path: file, weight: 1 }])).applied[0]!.modules, 2);
      results.push(await weights(pipe.model));
    }
    assert.equal(changed(results[0]!, base).length, 2);
    assert.deepEqual(changed(results[0]!, results[1]!), []);
    assert.deepEqual(changed(results[0]!, results[2]!), []);
  });
});

describe('LoRA errors and reports (tiny checkpoint)', function () {
  let pipe: sd.Pipeline;
  let dir: ReturnType<typeof tmpDir>;
  const file = async (name: string, tensors: Record<string, sd.Tensor>) => {
    const p = path.join(dir.dir, name);
    await sd.saveTensors(p, tensors, { overwrite: true });
    return p;
  };
  const r = (...shape: number[]) => sd.randn(shape, new sd.Generator(1));
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    dir = tmpDir('sdtorch-lora-');
  });
  after(() => {
    pipe?.dispose();
    dir?.cleanup();
  });

  it('an SDXL LoRA is refused, naming the file and what it is, and the model keeps its LoRAs', async function () {
    const loha = { path: lora('tiny-loha.safetensors'), weight: 0.7 };
    await sd.setLoras(pipe.model, [loha]);
    const before = await weights(pipe.model);
    const sdxl = await file('sdxl.safetensors', {
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': r(4, 768),
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': r(768, 4),
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': r(4, 1280),
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': r(1280, 4),
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': r(4, 2048),
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': r(640, 4),
    });
    await assert.rejects(sd.setLoras(pipe.model, [loha, { path: sdxl, weight: 1 }]), (e: Error) => {
      assert.match(e.message, /'.*sdxl\.safetensors' looks like an SDXL LoRA .*; this model is tiny test model/);
      return true;
    });
    assert.deepEqual(changed(await weights(pipe.model), before), []);
    // the UNet part alone still gives it away by its 2048-wide text context
    const unetOnly = await file('sdxl-unet.safetensors', {
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': r(4, 2048),
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': r(640, 4),
    });
    await assert.rejects(sd.setLoras(pipe.model, [{ path: unetOnly, weight: 1 }]), /looks like an SDXL LoRA \(2048-wide text context\)/);
    await sd.setLoras(pipe.model, []);
  });

  it('a file that is not a LoRA is refused with what it looks like', async function () {
    await assert.rejects(sd.setLoras(pipe.model, [{ path: await tinyCheckpoint(), weight: 1 }]), /is not a LoRA: it looks like a full SD 1\.x checkpoint/);
    const other = await file('other.safetensors', { 'foo.bar': r(3, 3) });
    await assert.rejects(sd.setLoras(pipe.model, [{ path: other, weight: 1 }]), /'.*other\.safetensors' is not a LoRA: it looks like no LoRA: it has no lora_up/);
    await assert.rejects(sd.setLoras(pipe.model, [{ path: path.join(dir.dir, 'missing.safetensors'), weight: 1 }]), /cannot open '.*missing\.safetensors'/);
  });

  it('partial matches are applied and reported with the unknown modules (and a warning); none at all is an error', async function () {
    const partial = await file('partial.safetensors', {
      'lora_unet_conv_in.lora_down.weight': r(2, 4, 3, 3),
      'lora_unet_conv_in.lora_up.weight': r(32, 2, 1, 1),
      'lora_te_text_model_encoder_layers_0_mlp_fc2.lora_down.weight': r(2, 64),
      'lora_te_text_model_encoder_layers_0_mlp_fc2.lora_up.weight': r(32, 2),
      'lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight': r(2, 32),
      'lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight': r(32, 2),
      'lora_unet_middle_thing.alpha': sd.Tensor.from(new Float32Array([1]), []),
      'bundle_emb.cat.string_to_param.*': r(1, 32),
    });
    const warnings: Error[] = [];
    const listen = (w: Error) => warnings.push(w);
    process.on('warning', listen);
    try {
      const res = await sd.setLoras(pipe.model, [{ path: partial, weight: 1 }]);
      await new Promise((done) => setImmediate(done));
      assert.deepEqual(res.applied[0]!.modules, 2);
      assert.deepEqual(res.applied[0]!.unmatched.sort(), ['bundle_emb.cat.string_to_param.*', 'lora_unet_down_blocks_7_attentions_0_proj_in', 'lora_unet_middle_thing']);
      assert.equal(res.weights.patched, 2);
      assert.ok(warnings.some((w) => (w as Error & { code?: string }).code === 'SDTORCH_LORA_PARTIAL' && /2 of 5 modules applied/.test(w.message)));
    } finally {
      process.off('warning', listen);
      await sd.setLoras(pipe.model, []);
    }
    const none = await file('none.safetensors', {
      'lora_unet_nowhere_a.lora_down.weight': r(2, 32),
      'lora_unet_nowhere_a.lora_up.weight': r(32, 2),
      'lora_unet_nowhere_b.lora_down.weight': r(2, 32),
      'lora_unet_nowhere_b.lora_up.weight': r(32, 2),
    });
    await assert.rejects(sd.setLoras(pipe.model, [{ path: none, weight: 1 }]), /none of its 2 modules \('lora_unet_nowhere_a', 'lora_unet_nowhere_b'\) names a layer of the model \(tiny test model/);
  });

  it('a LoRA for another SD 1.x width, a DoRA and broken factors are refused', async function () {
    const sd15 = await file('sd15.safetensors', kohyaLora(sd15Layers().slice(0, 3), { rank: 2 }));
    await assert.rejects(sd.setLoras(pipe.model, [{ path: sd15, weight: 1 }]), /module 'lora_unet_conv_in' makes a \[320, 4, 3, 3\] update for layer 'model\.diffusion_model\.input_blocks\.0\.0\.weight', which is \[32, 4, 3, 3\]; the file was made for another model/);
    const dora = await file('dora.safetensors', {
      'lora_unet_conv_in.lora_down.weight': r(2, 4, 3, 3),
      'lora_unet_conv_in.lora_up.weight': r(32, 2, 1, 1),
      'lora_unet_conv_in.dora_scale': r(32, 1, 1, 1),
    });
    await assert.rejects(sd.setLoras(pipe.model, [{ path: dora, weight: 1 }]), /is a DoRA network .* LoRA, LoCon, LoHa and LoKr files are supported/);
    const broken = await file('broken.safetensors', { 'lora_unet_conv_in.lora_down.weight': r(2, 4, 3, 3), 'lora_unet_conv_in.lora_up.weight': r(32, 3, 1, 1) });
    await assert.rejects(sd.setLoras(pipe.model, [{ path: broken, weight: 1 }]), /'.*broken\.safetensors': .*/);
    const lonely = await file('lonely.safetensors', { 'lora_unet_conv_in.hada_w1_a': r(32, 2), 'lora_unet_conv_in.hada_w1_b': r(2, 36) });
    await assert.rejects(sd.setLoras(pipe.model, [{ path: lonely, weight: 1 }]), /module 'lora_unet_conv_in' has tensors hada_w1_a, hada_w1_b, which make no LoRA, LoHa or LoKr/);
  });

  it('bad arguments are TypeErrors', async function () {
    await assert.rejects(sd.setLoras(pipe.model, 'x' as never), TypeError);
    await assert.rejects(sd.setLoras(pipe.model, [{ path: lora('tiny-loha.safetensors'), weight: NaN }]), /weight must be a finite number/);
    await assert.rejects(sd.setLoras(pipe.model, [{ path: '', weight: 1 }]), /path must be a file path/);
    // the native call checks its options synchronously
    assert.throws(() => pipe.model.setLoras({ loras: [{ name: 'x', path: 'y' } as never] }), /setLoras\(\): 'loras\[0\]\.multiplier' is required/);
    assert.throws(() => pipe.model.setLoras({ loras: ['x' as never] }), /setLoras\(\): 'loras\[0\]' must be an object/);
  });

  it('UNet calls during a setLoras see the weights before or after it, never in between', async function () {
    const x = sd.randn([1, 4, 8, 8], new sd.Generator(3));
    const ctx = sd.randn([1, 77, 32], new sd.Generator(4));
    const baseOut = await pipe.unet.forward(x, 500, ctx);
    await sd.setLoras(pipe.model, [{ path: lora('tiny-loha.safetensors'), weight: 0.7 }]);
    const loraOut = await pipe.unet.forward(x, 500, ctx);
    await sd.setLoras(pipe.model, []);
    const [, ...outs] = await Promise.all([
      sd.setLoras(pipe.model, [{ path: lora('tiny-loha.safetensors'), weight: 0.7 }]),
      ...Array.from({ length: 6 }, () => pipe.unet.forward(x, 500, ctx)),
    ]);
    for (const o of outs) assert.ok(relErr(o, baseOut) === 0 || relErr(o, loraOut) === 0);
    await sd.setLoras(pipe.model, []);
  });
});

describe('loraHash (A1111 "Lora hashes")', function () {
  it("is the first 12 hex digits of the sha256 of a .safetensors file's data after its header", async function () {
    const p = lora('tiny-loha.safetensors');
    const bytes = fs.readFileSync(p);
    const start = 8 + Number(bytes.readBigUInt64LE(0));
    assert.equal(await sd.loraHash(p), createHash('sha256').update(bytes.subarray(start)).digest('hex').slice(0, 12));
  });

  it("takes the file's sshs_model_hash metadata when it has one, and the whole file's sha256 for other formats", async function () {
    const { dir, cleanup } = tmpDir('sdtorch-lora-');
    try {
      const p = path.join(dir, 'tagged.safetensors');
      await sd.saveTensors(p, { 'lora_unet_conv_in.alpha': sd.Tensor.from(new Float32Array([1]), []) }, { metadata: { sshs_model_hash: '0123456789abcdef0123' } });
      assert.equal(await sd.loraHash(p), '0123456789ab');
      const pt = path.join(dir, 'other.pt');
      fs.writeFileSync(pt, 'not really a checkpoint');
      assert.equal(await sd.loraHash(pt), createHash('sha256').update('not really a checkpoint').digest('hex').slice(0, 12));
    } finally {
      cleanup();
    }
  });
});

describe('LoRA parity with diffusers (random SD 1.5, fp32 CPU)', function () {
  let pipe: sd.Pipeline;
  let ref: Record<string, sd.Tensor>;
  let files: Record<'kohya' | 'peft', string>;
  let dir: ReturnType<typeof tmpDir>;
  let x: sd.Tensor;
  let ctx: sd.Tensor;
  let baseUnet: sd.Tensor;
  const cat = { prompt: 'a photo of a cat', negativePrompt: 'blurry, low quality', cfgScale: 7.5, width: 64, height: 64, steps: 8, seed: 42, sampler: 'euler', decode: false } as const;

  before(async function () {
    ref = await sd.loadTensors(lora('sd15-reference.safetensors'));
    const meta = await sd.loadMetadata(lora('sd15-reference.safetensors'));
    pipe = await sd.loadPipeline(ensureWeights().safetensors, { device: 'cpu' });
    dir = tmpDir('sdtorch-lora-');
    const layers = sd15Layers();
    const made = { kohya: kohyaLora(layers), peft: peftLora(layers) };
    files = { kohya: path.join(dir.dir, 'kohya.safetensors'), peft: path.join(dir.dir, 'peft.safetensors') };
    for (const name of ['kohya', 'peft'] as const) {
      // the same tensors as the files diffusers loaded
      assert.equal(fingerprint(made[name]), meta[`${name}.fingerprint`], `${name} LoRA differs from make_lora_fixture.py's`);
      await sd.saveTensors(files[name], made[name]);
    }
    const g = new sd.Generator(7);
    x = g.randn([1, 4, 8, 8]);
    ctx = g.randn([1, 77, 768]);
    assert.equal(relErr(x, ref['unet.x']!), 0);
    baseUnet = await pipe.unet.forward(x, 500, ctx);
  });
  after(() => {
    pipe?.dispose();
    dir?.cleanup();
  });

  /** The text encoder's and UNet's outputs (and the final latents) with `loras` set, against diffusers'. */
  async function check(name: 'kohya' | 'peft' | 'both', loras: sd.Lora[], generate: boolean) {
    const r = await sd.setLoras(pipe.model, loras);
    for (const a of r.applied) assert.deepEqual(a.unmatched, []);
    const te = (await pipe.textEncoder.forward(pipe.tokenizer.encode('a photo of a cat'))).slice(1, 0, 4);
    const unet = await pipe.unet.forward(x, 500, ctx);
    const errors = [relErr(te, ref[`${name}.te`]!), relErr(unet, ref[`${name}.unet`]!)];
    // generate() sets the LoRAs of its job (a job without any runs on the base weights)
    if (generate) errors.push(relErr((await pipe.generate({ ...cat, loras })).latents, ref[`${name}.latents`]!));
    assert.ok(errors[0]! < 1e-4 && errors[1]! < 1e-4 && (errors[2] ?? 0) < 1e-3, `relative errors (text encoder, UNet, latents): ${errors.join(', ')}`);
    return r;
  }

  it('a kohya LoCon on every UNet and text-encoder layer (weight 0.8): text encoder and UNet within 1e-4, latents within 1e-3', async function () {
    const r = await check('kohya', [{ path: files.kohya, weight: 0.8 }], true);
    assert.equal(r.applied[0]!.modules, sd15Layers().length);
    assert.equal(r.weights.patched, sd15Layers().length);
  });

  it('a PEFT LoRA (weight 1): text encoder and UNet within 1e-4, latents within 1e-3', async function () {
    const r = await check('peft', [{ path: files.peft, weight: 1 }], true);
    assert.equal(r.applied[0]!.modules, 4 * 16 * 2 + 4 * 12); // attn1 + attn2 of 16 transformer blocks, 12 text layers
  });

  it('both at once (0.5 and 0.7): text encoder and UNet within 1e-4', async function () {
    await check('both', [{ path: files.kohya, weight: 0.5 }, { path: files.peft, weight: 0.7 }], false);
  });

  it('removing them gives the base UNet output exactly, every weight using the mapped file again', async function () {
    const r = await sd.setLoras(pipe.model, []);
    assert.deepEqual(r.weights, { total: r.weights.total, patched: 0, mapped: r.weights.total });
    assert.ok(r.weights.total > 800);
    const out = await pipe.unet.forward(x, 500, ctx);
    assert.equal(out.sub(baseUnet).norm(), 0);
  });
});
