// AUTOMATIC1111's /sdapi/v1 JSON <-> sdtorch jobs: the request schemas (A1111's field names and
// defaults: modules/api/models.py, modules/processing.py), their translation into a JobSpec once at
// the edge, and the response's `info` (Processed.js()).
import sharp from 'sharp';
import { resolveOptions, type GenerateOptions } from '../generate/options';
import { getSampler, samplerNames, scheduleName, SCHEDULES } from '../sampling/registry';
import { extractExtraNetworks } from '../text/prompt';
import { invalid, ApiError } from './errors';
import type { JobResult, JobSpec } from './job';

/** Bounds of one request, beyond the library's own (which are per generate() call). */
export interface Limits {
  /** Pixels on a side (width, height, and init images once resized). */
  maxSide: number;
  /** batch_size × n_iter. */
  maxImages: number;
  maxSteps: number;
  /** Bytes of one decoded input image. */
  maxImageBytes: number;
}

export const DEFAULT_LIMITS: Limits = { maxSide: 2048, maxImages: 16, maxSteps: 150, maxImageBytes: 32 << 20 };

// ---------------------------------------------------------------------------------------------
// Samplers and schedulers, as A1111 lists them

/** A1111's k-diffusion aliases (sd_samplers_kdiffusion.py, sd_samplers_lcm.py) for our samplers. */
const K_ALIASES: Record<string, string[]> = {
  euler_a: ['k_euler_a', 'k_euler_ancestral'], euler: ['k_euler'], lms: ['k_lms'], heun: ['k_heun'], dpm2: ['k_dpm_2'],
  dpm2_a: ['k_dpm_2_a'], dpmpp_2m: ['k_dpmpp_2m'], dpmpp_2m_sde: ['k_dpmpp_2m_sde'], ddim: [], pndm: ['plms'], ddpm: [], unipc: [],
  dpmpp_2s_a: ['k_dpmpp_2s_a'], dpmpp_sde: ['k_dpmpp_sde'], dpmpp_3m_sde: ['k_dpmpp_3m_sde'], deis: [], lcm: ['k_lcm'],
};

/** GET /sdapi/v1/samplers: [{name, aliases, options}]. */
export function samplerList(): { name: string; aliases: string[]; options: Record<string, string> }[] {
  return samplerNames.map((n) => ({ name: getSampler(n).label, aliases: [...(K_ALIASES[n] ?? []), n], options: {} }));
}

/** GET /sdapi/v1/schedulers: the schedules there are, as A1111 lists them (need_inner_model: built from the model's own σ table). */
export function schedulerList(): { name: string; label: string; aliases: string[] | null; default_rho: number; need_inner_model: boolean }[] {
  return SCHEDULES.map((s) => ({
    name: s.name === 'default' ? 'automatic' : s.name,
    label: s.label,
    aliases: s.aliases.length ? [...s.aliases] : null,
    default_rho: s.name === 'karras' ? 7 : -1,
    need_inner_model: s.name === 'sgm_uniform' || s.name === 'beta',
  }));
}

/**
 * A sampler_name (A1111's "DPM++ 2M Karras", "Euler a", a k_ alias, or ours) with A1111's separate
 * `scheduler` ("Automatic", "Karras", "Exponential", "SGM Uniform", "Beta", any case) -> the label
 * generate() takes. A schedule in the name wins over `scheduler`, as A1111 1.9+ reads it. Unknown
 * sampler: 404 as A1111's validate_sampler_name; a scheduler we lack, or one the sampler cannot walk: 422.
 */
export function resolveSamplerName(name: string, scheduler?: string | null): string {
  const alias = Object.entries(K_ALIASES).find(([, a]) => a.includes(name.toLowerCase().replace(/_ka$/, '')));
  let resolved;
  try {
    resolved = getSampler(alias ? alias[0] : name);
  } catch {
    throw new ApiError(404, `Sampler not found: '${name}'; see GET /sdapi/v1/samplers`);
  }
  try {
    const named = /_ka$/i.test(name) ? 'karras' : resolved.schedule;
    return getSampler(resolved.name, named !== 'default' ? named : scheduleName(scheduler ?? 'automatic')).label;
  } catch (e) {
    throw invalid(`${(e as Error).message}; see GET /sdapi/v1/schedulers`);
  }
}

// ---------------------------------------------------------------------------------------------
// Request schemas

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });

function commonProperties(l: Limits): Record<string, object> {
  return {
    prompt: { type: 'string', default: '', maxLength: 100_000 },
    negative_prompt: { type: 'string', default: '', maxLength: 100_000 },
    styles: nullable('array', { items: { type: 'string' } }),
    seed: { type: 'integer', default: -1, minimum: -1, maximum: Number.MAX_SAFE_INTEGER },
    subseed: { type: 'integer', default: -1, minimum: -1, maximum: Number.MAX_SAFE_INTEGER },
    subseed_strength: { type: 'number', default: 0 },
    seed_resize_from_h: { type: 'integer', default: -1 },
    seed_resize_from_w: { type: 'integer', default: -1 },
    sampler_name: nullable('string', { default: null, maxLength: 200 }),
    sampler_index: { type: 'string', default: 'Euler', maxLength: 200 },
    scheduler: nullable('string', { default: null, maxLength: 200 }),
    batch_size: { type: 'integer', default: 1, minimum: 1, maximum: l.maxImages },
    n_iter: { type: 'integer', default: 1, minimum: 1, maximum: l.maxImages },
    steps: { type: 'integer', default: 50, minimum: 1, maximum: l.maxSteps },
    cfg_scale: { type: 'number', default: 7.0, minimum: 0, maximum: 100 },
    width: { type: 'integer', default: 512, minimum: 8, maximum: l.maxSide },
    height: { type: 'integer', default: 512, minimum: 8, maximum: l.maxSide },
    restore_faces: nullable('boolean', { default: null }),
    tiling: nullable('boolean', { default: null }),
    do_not_save_samples: { type: 'boolean', default: false },
    do_not_save_grid: { type: 'boolean', default: false },
    eta: nullable('number', { default: null }),
    denoising_strength: { type: 'number', default: 0.75, minimum: 0, maximum: 1 },
    s_min_uncond: nullable('number', { default: null }),
    s_churn: nullable('number', { default: null }),
    s_tmax: nullable('number', { default: null }),
    s_tmin: nullable('number', { default: null }),
    s_noise: nullable('number', { default: null }),
    override_settings: nullable('object', {
      default: {},
      properties: {
        CLIP_stop_at_last_layers: { type: 'integer', minimum: 1, maximum: 12 },
        sd_model_checkpoint: { type: 'string', maxLength: 1000 },
        sd_vae: { type: 'string', maxLength: 1000 },
      },
    }),
    override_settings_restore_afterwards: { type: 'boolean', default: true },
    refiner_checkpoint: nullable('string', { default: null }),
    refiner_switch_at: nullable('number', { default: null }),
    disable_extra_networks: { type: 'boolean', default: false },
    comments: nullable('object', { default: null }),
    script_name: nullable('string', { default: null }),
    script_args: { type: 'array', default: [] },
    send_images: { type: 'boolean', default: true },
    save_images: { type: 'boolean', default: false },
    alwayson_scripts: { type: 'object', default: {} },
    force_task_id: nullable('string', { default: null }),
    infotext: nullable('string', { default: null }),
  };
}

/** JSON schema of a txt2img request (unknown fields are accepted and ignored, as A1111). */
export function txt2imgSchema(l: Limits): object {
  return {
    type: 'object',
    properties: {
      ...commonProperties(l),
      enable_hr: { type: 'boolean', default: false },
      firstphase_width: { type: 'integer', default: 0 },
      firstphase_height: { type: 'integer', default: 0 },
      hr_scale: { type: 'number', default: 2.0, minimum: 1, maximum: 4 },
      hr_upscaler: nullable('string', { default: null }),
      hr_second_pass_steps: { type: 'integer', default: 0, minimum: 0, maximum: l.maxSteps },
      hr_resize_x: { type: 'integer', default: 0, minimum: 0, maximum: l.maxSide },
      hr_resize_y: { type: 'integer', default: 0, minimum: 0, maximum: l.maxSide },
      hr_checkpoint_name: nullable('string', { default: null }),
      hr_sampler_name: nullable('string', { default: null }),
      hr_prompt: { type: 'string', default: '' },
      hr_negative_prompt: { type: 'string', default: '' },
    },
  };
}

/** JSON schema of an img2img request. */
export function img2imgSchema(l: Limits): object {
  return {
    type: 'object',
    properties: {
      ...commonProperties(l),
      init_images: nullable('array', { default: null, maxItems: l.maxImages, items: { type: 'string' } }),
      resize_mode: { type: 'integer', default: 0, minimum: 0, maximum: 3 },
      image_cfg_scale: nullable('number', { default: null }),
      mask: nullable('string', { default: null }),
      mask_blur_x: { type: 'integer', default: 4, minimum: 0, maximum: 64 },
      mask_blur_y: { type: 'integer', default: 4, minimum: 0, maximum: 64 },
      mask_blur: nullable('integer', { default: null, minimum: 0, maximum: 64 }),
      inpainting_fill: { type: 'integer', default: 0, minimum: 0, maximum: 3 },
      inpaint_full_res: { type: ['boolean', 'integer'], default: true },
      inpaint_full_res_padding: { type: 'integer', default: 0, minimum: 0, maximum: 1024 },
      inpainting_mask_invert: { type: ['integer', 'boolean'], default: 0 },
      initial_noise_multiplier: nullable('number', { default: null }),
      latent_mask: nullable('string', { default: null }),
      include_init_images: { type: 'boolean', default: false },
    },
  };
}

/** A request after schema validation (defaults filled in). */
export type SdRequest = Record<string, unknown> & {
  prompt: string;
  negative_prompt: string;
  seed: number;
  subseed: number;
  sampler_name: string | null;
  sampler_index: string;
  scheduler: string | null;
  batch_size: number;
  n_iter: number;
  steps: number;
  cfg_scale: number;
  width: number;
  height: number;
  denoising_strength: number;
  override_settings: Record<string, unknown> | null;
  script_name: string | null;
  alwayson_scripts: Record<string, unknown>;
  send_images: boolean;
  save_images: boolean;
};

// ---------------------------------------------------------------------------------------------
// Request -> JobSpec

/** Server-wide settings a request falls back on (A1111's shared.opts). */
export interface Settings {
  sd_model_checkpoint?: string;
  sd_vae: string;
  CLIP_stop_at_last_layers: number;
  show_progress_every_n_steps: number;
}

/** The bytes of a base64 image (raw, or a data: URL as A1111 accepts); 422 when it is not one. */
export async function decodeImage(value: unknown, what: string, limits: Limits): Promise<{ bytes: Buffer; width: number; height: number; hasAlpha: boolean }> {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${what} must be a base64-encoded image`);
  if (/^https?:\/\//i.test(value)) throw invalid(`${what}: image URLs are not fetched; send the image as base64`);
  const b64 = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  if (!/^[A-Za-z0-9+/\s_-]*={0,2}\s*$/.test(b64)) throw invalid(`${what} is not valid base64`);
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length === 0) throw invalid(`${what} is empty`);
  if (bytes.length > limits.maxImageBytes) throw invalid(`${what} is ${bytes.length} bytes; at most ${limits.maxImageBytes}`);
  let meta;
  try {
    meta = await sharp(bytes, { limitInputPixels: (limits.maxSide * 2) ** 2 }).metadata();
  } catch (e) {
    throw invalid(`${what} is not an image sdtorch can read (${(e as Error).message})`);
  }
  if (!meta.width || !meta.height) throw invalid(`${what} has no size`);
  if (meta.width > limits.maxSide * 2 || meta.height > limits.maxSide * 2) throw invalid(`${what} is ${meta.width}x${meta.height}; at most ${limits.maxSide * 2} pixels a side`);
  return { bytes, width: meta.width, height: meta.height, hasAlpha: Boolean(meta.hasAlpha) };
}

/**
 * The mask as A1111's create_binary_mask makes it: an RGBA mask whose alpha is not all opaque is
 * its alpha thresholded at 128, anything else its luminance; then inverted when asked.
 */
async function maskPng(m: { bytes: Buffer; hasAlpha: boolean }, invert: boolean): Promise<Buffer> {
  let img = sharp(m.bytes);
  if (m.hasAlpha) {
    const stats = await sharp(m.bytes).stats();
    const alpha = stats.channels.at(-1)!;
    if (alpha.min < 255) img = sharp(m.bytes).extractChannel('alpha').threshold(129);
    else img = sharp(m.bytes).removeAlpha().greyscale();
  } else img = img.greyscale();
  if (invert) img = img.negate({ alpha: false });
  return img.png().toBuffer();
}

const A1111_SEED_RANGE = 4294967294;
const fixedSeed = (seed: number): number => (seed === -1 ? Math.floor(Math.random() * A1111_SEED_RANGE) : seed);

/** Hires upscaler names A1111 clients send -> ours. */
function hiresUpscaler(name: unknown): 'latent' | 'lanczos' {
  if (name === null || name === undefined || name === '' || (typeof name === 'string' && /^latent/i.test(name))) return 'latent';
  if (typeof name === 'string' && /^lanczos$/i.test(name)) return 'lanczos';
  throw invalid(`hr_upscaler '${String(name)}' is not available: use Latent or Lanczos (see GET /sdapi/v1/upscalers)`);
}

export interface EdgeContext {
  limits: Limits;
  settings: Settings;
  /** Resolves a checkpoint name to its title; undefined when unknown. */
  checkpoint(name: string): string | undefined;
  vae(name: string): boolean;
  /** LoRA names a <lora:...> tag may use (undefined: not checked here). */
  loraNames?: Set<string>;
}

/** Checks an A1111 request and makes its job. Every error is an ApiError (4xx). */
export async function toJob(kind: 'txt2img' | 'img2img', r: SdRequest, ctx: EdgeContext): Promise<JobSpec> {
  const overrides = r.override_settings ?? {};
  if (r.script_name) throw invalid(`Script '${r.script_name}' not found`);
  const always = Object.keys(r.alwayson_scripts ?? {});
  if (always.length) throw invalid(`always on script ${always[0]} not found`);
  if (r.batch_size * r.n_iter > ctx.limits.maxImages) throw invalid(`batch_size × n_iter is ${r.batch_size * r.n_iter}; at most ${ctx.limits.maxImages} images a request`);

  let checkpoint = ctx.settings.sd_model_checkpoint;
  if (typeof overrides['sd_model_checkpoint'] === 'string') {
    checkpoint = ctx.checkpoint(overrides['sd_model_checkpoint']);
    if (checkpoint === undefined) throw new ApiError(404, 'Model not found');
  }
  // A1111: a refiner_checkpoint other than "" / "None" hands the run over at refiner_switch_at (default 0.8).
  let refiner: JobSpec['refiner'];
  const refinerName = r['refiner_checkpoint'] as string | null;
  if (refinerName && refinerName !== 'None') {
    const title = ctx.checkpoint(refinerName);
    if (title === undefined) throw new ApiError(404, `refiner checkpoint '${refinerName}' not found; see GET /sdapi/v1/sd-models`);
    const switchAt = (r['refiner_switch_at'] as number | null) ?? 0.8;
    if (!(switchAt > 0 && switchAt < 1)) throw invalid(`refiner_switch_at must be in (0, 1), got ${switchAt}`);
    refiner = { checkpoint: title, switchAt };
  }
  const vae = typeof overrides['sd_vae'] === 'string' ? overrides['sd_vae'] : ctx.settings.sd_vae;
  if (vae !== 'Automatic' && vae !== 'None' && !ctx.vae(vae)) throw new ApiError(404, `VAE '${vae}' not found; see GET /sdapi/v1/sd-vae`);
  const clipSkip = typeof overrides['CLIP_stop_at_last_layers'] === 'number' ? overrides['CLIP_stop_at_last_layers'] : ctx.settings.CLIP_stop_at_last_layers;
  const sampler = resolveSamplerName(r.sampler_name || r.sampler_index || 'Euler', r.scheduler);
  // A1111 works at width/height rounded down to its latent grid.
  const width = Math.max(8, r.width - (r.width % 8));
  const height = Math.max(8, r.height - (r.height % 8));

  if (ctx.loraNames) {
    for (const net of extractExtraNetworks(r.prompt).networks)
      if ((net.type === 'lora' || net.type === 'lyco') && !ctx.loraNames.has(net.name)) throw invalid(`LoRA '${net.name}' not found; see GET /sdapi/v1/loras`);
  }

  const spec: JobSpec = {
    kind,
    ...(checkpoint !== undefined ? { checkpoint } : {}),
    ...(refiner ? { refiner } : {}),
    ...(vae !== 'Automatic' && vae !== 'None' ? { vae } : {}),
    prompt: r.prompt,
    negativePrompt: r.negative_prompt,
    seed: fixedSeed(r.seed),
    subseed: fixedSeed(r.subseed),
    steps: r.steps,
    cfgScale: r.cfg_scale,
    sampler,
    width,
    height,
    batchSize: r.batch_size,
    nIter: r.n_iter,
    clipSkip,
    previewEvery: ctx.settings.show_progress_every_n_steps,
  };

  if (kind === 'txt2img' && r['enable_hr'] === true) {
    if (r['hr_resize_x'] || r['hr_resize_y']) throw invalid('hr_resize_x/hr_resize_y are not supported: use hr_scale');
    if (r.denoising_strength <= 0) throw invalid('denoising_strength must be above 0 for the hires fix');
    spec.hires = { scale: r['hr_scale'] as number, steps: r['hr_second_pass_steps'] as number, strength: r.denoising_strength, upscaler: hiresUpscaler(r['hr_upscaler']) };
    const big = { w: Math.floor(width * spec.hires.scale), h: Math.floor(height * spec.hires.scale) };
    if (big.w > ctx.limits.maxSide || big.h > ctx.limits.maxSide) throw invalid(`the hires fix makes ${big.w}x${big.h}; at most ${ctx.limits.maxSide} pixels a side`);
  }

  if (kind === 'img2img') {
    const init = r['init_images'];
    if (!Array.isArray(init) || init.length === 0) throw new ApiError(404, 'Init image not found');
    if (init.length > 1 && init.length > r.batch_size) throw invalid(`bad number of images passed: ${init.length}; expecting ${r.batch_size} or less`);
    const images = await Promise.all(init.map((v, i) => decodeImage(v, `init_images[${i}]`, ctx.limits)));
    if (!(r.denoising_strength > 0)) throw invalid('denoising_strength must be above 0 for img2img');
    spec.strength = r.denoising_strength;
    spec.initImages = images.map((i) => i.bytes.toString('base64'));
    if (r['mask']) {
      const mask = await decodeImage(r['mask'], 'mask', ctx.limits);
      spec.mask = (await maskPng(mask, Boolean(r['inpainting_mask_invert']))).toString('base64');
      const [blurX, blurY] = [r['mask_blur_x'] as number, r['mask_blur_y'] as number];
      if (r['mask_blur'] == null && blurX !== blurY) throw invalid(`mask_blur_x (${blurX}) and mask_blur_y (${blurY}) differ: sdtorch blurs the mask alike both ways; send mask_blur`);
      spec.maskBlur = (r['mask_blur'] as number | null) ?? blurX;
      spec.inpaintArea = r['inpaint_full_res'] ? 'masked' : 'whole';
      spec.inpaintPadding = r['inpaint_full_res_padding'] as number;
    }
  }
  checkWithLibrary(spec);
  return spec;
}

/** The library's own check of the options the job will run with (bounds, sampler × steps × strength, inpainting). */
function checkWithLibrary(spec: JobSpec): void {
  const o: GenerateOptions = {
    prompt: spec.prompt, negativePrompt: spec.negativePrompt, steps: spec.steps, cfgScale: spec.cfgScale, sampler: spec.sampler,
    seed: spec.seed, width: spec.width, height: spec.height, batchSize: spec.batchSize, clipSkip: spec.clipSkip,
    ...(spec.initImages ? { image: Buffer.alloc(0), strength: spec.strength } : {}),
    ...(spec.mask ? { mask: Buffer.alloc(0), maskBlur: spec.maskBlur, inpaintArea: spec.inpaintArea, ...(spec.inpaintArea === 'masked' ? { inpaintPadding: spec.inpaintPadding } : {}) } : {}),
  };
  try {
    resolveOptions(o);
    if (spec.hires) resolveOptions({ ...o, steps: spec.hires.steps || spec.steps, strength: spec.hires.strength, image: Buffer.alloc(0) });
  } catch (e) {
    throw invalid((e as Error).message.replace(/^generate\(\): /, ''));
  }
}

// ---------------------------------------------------------------------------------------------
// JobResult -> response

/** The response's `info`: A1111's Processed.js() keys. */
export function infoJson(kind: 'txt2img' | 'img2img', spec: JobSpec, res: JobResult): string {
  const first = res.seeds[0] ?? spec.seed;
  return JSON.stringify({
    prompt: res.prompts[0] ?? spec.prompt,
    all_prompts: res.prompts,
    negative_prompt: res.negatives[0] ?? spec.negativePrompt,
    all_negative_prompts: res.negatives,
    seed: first,
    all_seeds: res.seeds,
    subseed: spec.subseed,
    all_subseeds: res.seeds.map((_, i) => spec.subseed + i),
    subseed_strength: 0,
    width: res.width,
    height: res.height,
    sampler_name: spec.sampler,
    cfg_scale: spec.cfgScale,
    steps: spec.steps,
    batch_size: spec.batchSize,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: res.modelName,
    sd_model_hash: res.modelHash,
    sd_vae_name: spec.vae ?? null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: kind === 'img2img' || spec.hires ? (spec.strength ?? spec.hires?.strength ?? null) : null,
    extra_generation_params: spec.hires ? { 'Hires upscale': spec.hires.scale, 'Hires upscaler': spec.hires.upscaler === 'latent' ? 'Latent' : 'Lanczos' } : {},
    index_of_first_image: 0,
    infotexts: res.infotexts,
    styles: [],
    job_timestamp: res.jobTimestamp,
    clip_skip: spec.clipSkip,
    is_using_inpainting_conditioning: res.inpaintingConditioning ?? false,
  });
}
