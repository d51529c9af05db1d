// The SDXL references (scripts/make_sdxl_reference.py): each case is a diffusers call
// (StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline) whose final latents are stored;
// here it becomes the same generate() call, and the components' outputs are compared entry by entry.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import * as sd from '../lib';
import type { GenerateOptions } from '../lib';
import { fixture, relErrTensor as relErr } from './helpers';

/** A diffusers pipeline call as the reference JSON records it. */
interface DiffusersCall {
  prompt: string;
  negative_prompt?: string;
  guidance_scale: number;
  num_inference_steps: number;
  height?: number;
  width?: number;
  strength?: number;
  denoising_start?: number;
  denoising_end?: number;
  generator: string;
  original_size?: [number, number];
  crops_coords_top_left?: [number, number];
  target_size?: [number, number];
  negative_original_size?: [number, number];
  negative_crops_coords_top_left?: [number, number];
  negative_target_size?: [number, number];
  aesthetic_score?: number;
  negative_aesthetic_score?: number;
}

interface ReferenceCase {
  pipeline: string;
  call: DiffusersCall;
  scheduler: { cls: string };
  shape: number[];
}

/** diffusers' scheduler classes -> sdtorch's sampler names. */
const SAMPLERS: Record<string, string> = {
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler_a',
  DPMSolverMultistepScheduler: 'dpmpp_2m',
};

/** (height, width) -> { width, height } */
const size = (hw: [number, number] | undefined) => (hw ? { width: hw[1], height: hw[0] } : undefined);
const crop = (tl: [number, number] | undefined) => (tl ? { top: tl[0], left: tl[1] } : undefined);

export class SdxlReference {
  private tensors?: Record<string, sd.Tensor>;
  readonly json: { cases: Record<string, ReferenceCase> } & Record<string, unknown>;
  constructor(private readonly name: string) {
    this.json = JSON.parse(fs.readFileSync(fixture(`${name}.json`), 'utf8'));
  }

  async get(key: string): Promise<sd.Tensor> {
    this.tensors ??= await sd.loadTensors(fixture(`${this.name}.safetensors`));
    const t = this.tensors[key];
    assert.ok(t, `no '${key}' in ${this.name}.safetensors`);
    return t;
  }

  case(key: string): ReferenceCase {
    const c = this.json.cases[key];
    assert.ok(c, `no case '${key}' in ${this.name}.json`);
    return c;
  }

  /** The case's diffusers call in generate()'s option names; no negative prompt = '' (zeroed, as force_zeros_for_empty_prompt). */
  options(key: string): GenerateOptions {
    const { call, scheduler } = this.case(key);
    const seed = /manual_seed\((\d+)\)/.exec(call.generator)?.[1];
    assert.ok(seed !== undefined && SAMPLERS[scheduler.cls], `case ${key}: ${call.generator} ${scheduler.cls}`);
    const pick = <T>(name: string, v: T | undefined) => (v === undefined ? {} : { [name]: v });
    return {
      prompt: call.prompt,
      negativePrompt: call.negative_prompt ?? '',
      cfgScale: call.guidance_scale,
      steps: call.num_inference_steps,
      sampler: SAMPLERS[scheduler.cls]!,
      seed: Number(seed),
      ...pick('width', call.width),
      ...pick('height', call.height),
      ...pick('strength', call.strength),
      ...pick('denoisingStart', call.denoising_start),
      ...pick('denoisingEnd', call.denoising_end),
      ...pick('originalSize', size(call.original_size)),
      ...pick('cropTopLeft', crop(call.crops_coords_top_left)),
      ...pick('targetSize', size(call.target_size)),
      ...pick('negativeOriginalSize', size(call.negative_original_size)),
      ...pick('negativeCropTopLeft', crop(call.negative_crops_coords_top_left)),
      ...pick('negativeTargetSize', size(call.negative_target_size)),
      ...pick('aestheticScore', call.aesthetic_score),
      ...pick('negativeAestheticScore', call.negative_aesthetic_score),
      decode: false,
    };
  }

  /** generate() with the case's settings (plus `extra`): final latents within 1e-3 of diffusers'. */
  async sameLatents(pipe: sd.Pipeline, key: string, extra: Partial<GenerateOptions> = {}): Promise<sd.Tensor> {
    const r = await pipe.generate({ ...this.options(key), ...extra });
    const expected = await this.get(key);
    assert.deepEqual(r.latents.shape, expected.shape);
    const e = relErr(r.latents, expected);
    assert.ok(e < 1e-3, `${key}: relative error ${e}`);
    return r.latents;
  }
}

/** A network's output within 1e-4 of the reference's. */
export function within(actual: sd.Tensor, expected: sd.Tensor, bound = 1e-4): void {
  assert.deepEqual(actual.shape, expected.shape);
  const e = relErr(actual, expected);
  assert.ok(e < bound, `relative error ${e}`);
}

/**
 * The component checks of one model of a reference (prefix 'tiny', 'base', ...): each text encoder
 * at its penultimate layer, the pooled output, the UNet with textEmbeds and timeIds, the VAE.
 */
export function componentTests(reference: SdxlReference, prefix: string, pipe: () => sd.Pipeline): void {
  const r = (k: string) => reference.get(`${prefix}.${k}`);
  const refiner = () => pipe().textEncoders.length === 1;
  it('text encoders: penultimate hidden states and the pooled, projected output within 1e-4', async function () {
    const p = pipe();
    const last = p.textEncoders.at(-1)!;
    const { context, pooled } = await last.forwardPooled(await r('text_encoder_2.ids'));
    within(context, await r('text_encoder_2.hidden_states_m2'));
    within(pooled, await r('text_encoder_2.text_embeds'));
    if (!refiner()) within(await p.textEncoders[0]!.forward(await r('text_encoder.ids')), await r('text_encoder.hidden_states_m2'));
  });
  it('UNet with textEmbeds and timeIds within 1e-4', async function () {
    const p = pipe();
    const context = async (rows: number[]) => {
      const pick = async (k: string) => sd.Tensor.cat(await Promise.all(rows.map(async (i) => (await r(k)).slice(0, i, i + 1))));
      const g = await pick('text_encoder_2.hidden_states_m2');
      return { context: refiner() ? g : sd.Tensor.cat([await pick('text_encoder.hidden_states_m2'), g], 2), textEmbeds: await pick('text_encoder_2.text_embeds') };
    };
    for (const [unet, rows] of [['unet', [0]], ['unet2', [1, 2]]] as const) {
      const out = await p.unet.forward(await r(`${unet}.x`), await r(`${unet}.t`), { ...(await context([...rows])), timeIds: await r(`${unet}.time_ids`) });
      within(out, await r(`${unet}.out`));
    }
  });
  it('VAE encode (mean, logvar) and decode within 1e-4', async function () {
    const p = pipe();
    const moments = await p.vae.encode(await r('vae.image'));
    const [mean, logvar] = moments.chunk(2, 1);
    within(mean!, await r('vae.mean'));
    within(logvar!, await r('vae.logvar'));
    within(await p.vae.decode(await r('vae.z')), await r('vae.decoded'));
  });
}
