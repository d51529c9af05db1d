// generate() options: their types, defaults and validation. A whole job is resolved and checked
// here, once, before any work starts (the sampler, its schedule and steps included).
import type { RgbImage, Size } from '../image/io';
import type { Family } from '../models/family';
import type { Lora } from '../models/lora';
import type { HiresOptions } from './hires';
import type { RefinerOptions } from './refiner';
import type { PadCondUncond } from '../sampling/denoiser';
import { getSampler, resolveSampler, scheduleNames, type ResolvedSampler, type ScheduleLabel, type ScheduleName, type TimestepSpacing } from '../sampling/registry';
import { TIMESTEP_SPACINGS } from '../sampling/schedules';
import { Tensor } from '../tensor';
import { EMPHASIS, type Emphasis } from '../text/conditioning';
import { resolveSeed } from '../util/seed';

export interface Progress {
  step: number;
  total: number;
  elapsedMs: number;
  /** Model evaluations per second so far. */
  itPerSec: number;
  etaMs: number;
  /**
   * The current estimate of the clean latents [B, C, h, w] (UNet space), computed when called;
   * call it inside onProgress only (for previews such as A1111's live preview).
   */
  denoised?: () => Tensor;
  /**
   * With previewEvery: at every previewEvery-th evaluation and at the last, the first image's
   * current estimate as 8-bit RGB, decoded by the pipeline's TAESD when one is loaded (the image's
   * size), else by A1111's cheap latent -> RGB approximation (one pixel per latent cell: 64x64 for 512x512).
   */
  preview?: RgbImage;
}

/** What decodes the final latents into the images: the checkpoint's VAE, or the TAESD loaded with the pipeline. */
export type Decoder = 'vae' | 'taesd';

export interface GenerateOptions {
  prompt: string | string[];
  negativePrompt?: string | string[];
  steps?: number;
  cfgScale?: number;
  /** A sampler name (see samplerNames) or an A1111 display name such as "DPM++ 2M Karras". */
  sampler?: string;
  /**
   * The noise schedule (see scheduleNames): 'default' (the sampler's own; A1111's "Automatic"),
   * 'karras', 'exponential', 'beta' (σ spreads; samplers over σ), or 'sgm_uniform' ('trailing'
   * timestep spacing); A1111's labels ("Karras", "SGM Uniform", ...) in any case are taken too.
   */
  schedule?: ScheduleName | ScheduleLabel;
  /**
   * Same seed, same image: an integer in [0, 2^64) as a number (up to 2^53 - 1), BigInt or decimal
   * string. Omitted or -1: a random one is drawn (and returned). Other negative seeds are refused.
   */
  seed?: number | bigint | string;
  /**
   * Image size in pixels, multiples of 8. Default: the family's default size (txt2img); the input
   * image's size rounded down to multiples of 8 (img2img, inpainting 'whole'; both given: the image
   * is resized to them); inpainting 'masked': the size the crop is worked at (default the family's
   * default size, square), the output keeping the input's size.
   */
  width?: number;
  height?: number;
  /** Images per prompt. */
  batchSize?: number;
  /** img2img or inpainting input: a file path or encoded image bytes (any format sharp reads). */
  image?: string | Buffer;
  /**
   * img2img and inpainting: how much of the schedule to run, in (0, 1] (diffusers' strength, A1111's
   * "Denoising strength"). Default 0.8 for img2img, 1 with a mask (diffusers' inpainting default:
   * the masked area starts from pure noise).
   */
  strength?: number;
  /**
   * Inpainting: which pixels to repaint, as an image (path or bytes, any format and size; read as
   * RGB then grey, resized to the image's size as diffusers' VaeImageProcessor does, binarized at
   * 50% grey for the model). White = repaint, black = keep. Needs `image`. An all-black mask is
   * refused (nothing to repaint); an all-white one repaints everything (a 9-channel inpainting
   * model then sees no image; a 4-channel model at strength 1 ignores it). With a 9-channel
   * inpainting UNet the mask and the masked image's latents are model inputs; with a 4-channel
   * UNet the unmasked latents are put back after every step. The returned images keep the
   * original pixels outside the (blurred) mask (A1111's overlay).
   */
  mask?: string | Buffer;
  /** Inpainting: Gaussian blur of the mask in pixels (A1111's "Mask blur": σ = maskBlur, OpenCV kernel); default 0. */
  maskBlur?: number;
  /**
   * Inpainting: 'whole' (default) works on the whole image; 'masked' (A1111's "Only masked") crops
   * the mask's bounding box plus `inpaintPadding`, grown to the width:height ratio, works on it at
   * width x height (default: the family's default size, square), and pastes the result back: the
   * images keep the input's size.
   */
  inpaintArea?: 'whole' | 'masked';
  /** 'masked' area: pixels added around the mask's bounding box (A1111's "Masked area padding"); default 32. */
  inpaintPadding?: number;
  /**
   * Guidance rescale φ in [0, 1] (Lin et al. 2023, arXiv:2305.08891; diffusers' guidance_rescale):
   * the guided prediction's standard deviation is pulled toward the conditional one's. Default 0.
   */
  rescaleCfg?: number;
  /** Rescale the noise schedule to zero terminal SNR (diffusers' rescale_betas_zero_snr), for models trained so (v-prediction). Default false. */
  zeroTerminalSnr?: boolean;
  /**
   * diffusers' timestep_spacing: 'leading', 'linspace' or 'trailing' (Lin et al. 2023, Table 2).
   * Default: each sampler's diffusers class default ('leading' for ddim, ddpm, pndm; 'linspace' otherwise).
   */
  timestepSpacing?: TimestepSpacing;
  /**
   * img2img from latents [B, C, h, w] in UNet space instead of an image (no VAE encode): what the
   * hires fix's latent upscaler starts from. B must be prompts × batchSize.
   */
  initLatents?: Tensor;
  /** Hires fix (txt2img): upscale the result and run img2img at the larger size, as A1111. */
  hires?: HiresOptions;
  /** SDXL: hand the run to a refiner at `switchAt` of the schedule (A1111's Refiner; diffusers' denoising_end/start). */
  refiner?: RefinerOptions;
  /**
   * SDXL micro-conditioning (Podell et al. 2023, arXiv:2307.01952, §2.2; diffusers' original_size,
   * crops_coords_top_left, target_size), in pixels: the size the training image had, where it was
   * cropped, the size to make. Defaults as StableDiffusionXLPipeline: both sizes the output's, crop 0, 0.
   * The negative ones (diffusers' negative_original_size, ...) default to these.
   */
  originalSize?: Size;
  cropTopLeft?: CropTopLeft;
  targetSize?: Size;
  negativeOriginalSize?: Size;
  negativeCropTopLeft?: CropTopLeft;
  negativeTargetSize?: Size;
  /** SDXL refiner: the aesthetic score conditioning (diffusers' aesthetic_score), default 6; the negative's 2.5. */
  aestheticScore?: number;
  negativeAestheticScore?: number;
  /**
   * SDXL base + refiner (diffusers' denoising_end): stop once round(1000·(1 − denoisingEnd)) is
   * passed and return latents still noisy (decode: false) for a refiner to finish with
   * `initLatents` + `denoisingStart`. In (0, 1); first-order and multistep samplers.
   */
  denoisingEnd?: number;
  /**
   * Refiner side of the hand-off (diffusers' denoising_start): `initLatents` are taken as they are
   * (no noise added, strength unused) and only the steps below round(1000·(1 − denoisingStart)) run.
   */
  denoisingStart?: number;
  /** Starting noise [B,4,H/8,W/8] instead of drawing it from the seed (txt2img). */
  latents?: Tensor;
  onProgress?: (p: Progress) => void;
  /**
   * Give onProgress a preview image (Progress.preview) every this many model evaluations, and at
   * the last; each costs a TAESD decode when one is loaded. Default: none.
   */
  previewEvery?: number;
  signal?: AbortSignal;
  /** Where networks wait while another stage runs (e.g. 'cpu' to save GPU memory). */
  idleDevice?: string;
  /** Decode to PNGs (default true); false returns latents only. */
  decode?: boolean;
  /**
   * 'vae' (default): the checkpoint's VAE decodes the images; 'taesd': the TAESD loaded with the
   * pipeline (loadPipeline's taesd option) does, several times faster and rougher (hires' and the
   * refiner's last pass included; vaeTiling does not apply to it).
   */
  decoder?: Decoder;
  /** A1111's "Clip skip": 1 = the text encoder's last layer (default), 2 = the penultimate, ... */
  clipSkip?: number;
  /** How (weights:1.2) act: 'original' (A1111's default, mean restored), 'no-norm', 'ignore', 'none' (brackets are text). */
  emphasis?: Emphasis;
  /** Folders of textual-inversion embeddings (.pt, .bin, .safetensors), used in prompts by file name. */
  embeddingDirs?: string[];
  /** LoRA/LyCORIS files for this job (weight: 1 as trained), with those the prompts tag as <lora:name:w>. */
  loras?: Lora[];
  /** Folders where <lora:name:w> tags are found by file name (any subfolder). */
  loraDirs?: string[];
  /**
   * A prompt and a negative prompt of different lengths: false (default) runs them through separate
   * UNet calls; true pads the shorter with empty-prompt chunks; 'v0' A1111's older last-vector padding.
   */
  padCondUncond?: PadCondUncond;
  /**
   * VAE in overlapping 512-pixel tiles: memory of one tile at any size. 'auto' (default) tiles
   * images over 1024x1024; results below that are untouched.
   */
  vaeTiling?: boolean | 'auto';
}

/** @internal A stage of a multi-pass run (refiner.ts) that wants its infotexts without decoding. */
export const KEEP_INFOTEXTS = Symbol('keepInfotexts');
/** @internal */
export type StageOptions = GenerateOptions & { [KEEP_INFOTEXTS]?: boolean };

/** Pixels from the top and from the left. */
export interface CropTopLeft {
  top: number;
  left: number;
}

/** SDXL's size and score conditioning, with what is left to the output size undefined. */
export interface MicroConditioning {
  originalSize?: Size;
  cropTopLeft: CropTopLeft;
  targetSize?: Size;
  negativeOriginalSize?: Size;
  negativeCropTopLeft?: CropTopLeft;
  negativeTargetSize?: Size;
  aestheticScore: number;
  negativeAestheticScore: number;
}

export interface ResolvedOptions {
  prompts: string[];
  negatives: string[];
  steps: number;
  cfgScale: number;
  /** The sampler with its schedule, checked against steps and strength. */
  sampler: ResolvedSampler;
  seed: number | bigint;
  /** Undefined: the init image's size (img2img) or the family's default size (txt2img). */
  width: number | undefined;
  height: number | undefined;
  batchSize: number;
  strength: number;
  /** Inpainting, resolved; undefined without a mask. */
  inpaint: InpaintOptions | undefined;
  rescaleCfg: number;
  zeroTerminalSnr: boolean;
  /** Undefined: the sampler's own default. */
  timestepSpacing: TimestepSpacing | undefined;
  clipSkip: number;
  emphasis: Emphasis;
  embeddingDirs: string[];
  loras: Lora[];
  loraDirs: string[];
  padCondUncond: PadCondUncond;
  micro: MicroConditioning;
  denoisingStart: number | undefined;
  denoisingEnd: number | undefined;
  decoder: Decoder;
  /** Undefined: no previews. */
  previewEvery: number | undefined;
}

export type InpaintArea = 'whole' | 'masked';

export interface InpaintOptions {
  mask: string | Buffer;
  maskBlur: number;
  area: InpaintArea;
  padding: number;
}

/** Limits that keep one call from exhausting memory before any check of the engine could. */
export const LIMITS = {
  /** Images in one call: prompts × batchSize. */
  images: 64,
  /** Pixels on a side. */
  side: 4096,
  /** Pixels in one call: width × height × images (16 megapixels, e.g. 4 images of 2048x2048). */
  pixels: 2 ** 24,
} as const;

function fail(msg: string, type: ErrorConstructor = RangeError): never {
  throw new type(`generate(): ${msg}`);
}

const show = (v: unknown) => (typeof v === 'string' ? `'${v}'` : typeof v === 'bigint' ? `${v}n` : typeof v === 'object' && v !== null ? Object.prototype.toString.call(v) : String(v));

const positiveInt = (v: unknown, name: string, max: number) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(`${name} must be a positive integer, got ${show(v)}`);
  if (v > max) fail(`${name} must be at most ${max}, got ${v}`);
  return v;
};

const dimension = (v: unknown, name: string) => {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 8 || v % 8 !== 0)
    fail(`${name} must be a positive multiple of 8, got ${show(v)}${typeof v === 'number' && Number.isFinite(v) ? ` (try ${Math.max(8, Math.round(v / 8) * 8)})` : ''}`);
  if (v > LIMITS.side) fail(`${name} must be at most ${LIMITS.side} pixels, got ${v}`);
  return v;
};

const strings = (v: unknown, name: string): string[] => {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || list.some((p) => typeof p !== 'string')) fail(`${name} must be a string or a non-empty array of strings`, TypeError);
  return list as string[];
};

function optionalType(o: GenerateOptions, key: keyof GenerateOptions, ok: (v: unknown) => boolean, what: string): void {
  if (o[key] !== undefined && !ok(o[key])) fail(`${key} must be ${what}, got ${show(o[key])}`, TypeError);
}

/** The pixel budget of one call (sizes that come from an init image or the family's default too). */
export function checkSize({ width, height }: { width: number; height: number }, images: number): void {
  if (width > LIMITS.side || height > LIMITS.side) fail(`the image is ${width}x${height}; at most ${LIMITS.side} pixels on a side`);
  if (width * height * images > LIMITS.pixels)
    fail(`${images} images of ${width}x${height} are ${((width * height * images) / 2 ** 20).toFixed(0)} megapixels; at most ${LIMITS.pixels / 2 ** 20} in one call`);
}

/** What options are checked against: the loaded checkpoint's prediction, UNet inputs and scheduler defaults. */
export type ModelTraits = Pick<Family, 'prediction' | 'unetInChannels' | 'latentChannels'> & Partial<Pick<Family, 'timeIds' | 'timestepSpacing'>>;

const MICRO_KEYS = ['originalSize', 'cropTopLeft', 'targetSize', 'negativeOriginalSize', 'negativeCropTopLeft', 'negativeTargetSize'] as const;
const SCORE_KEYS = ['aestheticScore', 'negativeAestheticScore'] as const;

/** SDXL's micro-conditioning options, checked against what the model's vector input holds. */
function microConditioning(o: GenerateOptions, traits?: ModelTraits): MicroConditioning {
  const pixels = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 2 ** 16;
  for (const key of MICRO_KEYS) {
    const v = o[key] as unknown;
    if (v === undefined) continue;
    const crop = key.endsWith('TopLeft');
    const [a, b] = crop ? ['top', 'left'] : ['width', 'height'];
    if (typeof v !== 'object' || v === null || !pixels((v as Record<string, unknown>)[a!]) || !pixels((v as Record<string, unknown>)[b!]))
      fail(`${key} must be { ${a}, ${b} } in whole pixels, got ${JSON.stringify(v) ?? show(v)}`, TypeError);
  }
  for (const key of SCORE_KEYS) optionalType(o, key, (v) => typeof v === 'number' && Number.isFinite(v), 'a number');
  const ids = traits?.timeIds;
  if (ids !== undefined) {
    const stray = [...MICRO_KEYS, ...SCORE_KEYS].filter((k) => {
      if (o[k] === undefined) return false;
      if (k.toLowerCase().includes('aesthetic')) return !ids.includes('aesthetic_score');
      if (k.toLowerCase().includes('target')) return !ids.includes('target_size');
      return ids.length === 0;
    });
    if (stray.length)
      fail(`${stray.join(', ')} ${stray.length > 1 ? 'are' : 'is'} not conditioning of this model (${ids.length ? `it takes ${ids.join(', ')}` : 'SDXL models only'}): leave ${stray.length > 1 ? 'them' : 'it'} out`);
  }
  return {
    ...(o.originalSize ? { originalSize: o.originalSize } : {}),
    cropTopLeft: o.cropTopLeft ?? { top: 0, left: 0 },
    ...(o.targetSize ? { targetSize: o.targetSize } : {}),
    ...(o.negativeOriginalSize ? { negativeOriginalSize: o.negativeOriginalSize } : {}),
    ...(o.negativeCropTopLeft ? { negativeCropTopLeft: o.negativeCropTopLeft } : {}),
    ...(o.negativeTargetSize ? { negativeTargetSize: o.negativeTargetSize } : {}),
    aestheticScore: o.aestheticScore ?? 6,
    negativeAestheticScore: o.negativeAestheticScore ?? 2.5,
  };
}

/**
 * Resolves defaults and checks every option of a job, before any work, against the checkpoint's
 * `traits` when given. Errors say what to pass.
 */
export function resolveOptions(o: GenerateOptions, traits?: ModelTraits): ResolvedOptions {
  if (typeof o !== 'object' || o === null) fail(`takes an options object ({ prompt, ... }), got ${show(o)}`, TypeError);
  const prompts = strings(o.prompt, 'prompt');
  if ([o.prompt, o.negativePrompt].flat().some((p) => typeof p === 'string' && p.includes('\0')))
    fail('prompts cannot contain NUL characters (\\0): remove them (PNG text, where the prompt is written, cannot hold them)');
  const neg = o.negativePrompt ?? '';
  const negatives = typeof neg === 'string' ? prompts.map(() => neg) : strings(neg, 'negativePrompt');
  if (negatives.length !== prompts.length) fail(`negativePrompt has ${negatives.length} entries for ${prompts.length} prompts`);
  const cfgScale = o.cfgScale ?? 7.5;
  if (typeof cfgScale !== 'number' || !Number.isFinite(cfgScale)) fail(`cfgScale must be a number, got ${show(cfgScale)}`);
  const strength = o.strength ?? (o.mask !== undefined ? 1 : 0.8);
  if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) fail(`strength must be in (0, 1], got ${show(strength)}`);
  const rescaleCfg = o.rescaleCfg ?? 0;
  if (typeof rescaleCfg !== 'number' || !(rescaleCfg >= 0 && rescaleCfg <= 1)) fail(`rescaleCfg must be a number from 0 (off) to 1, got ${show(rescaleCfg)}`);
  let seed: number | bigint;
  try {
    seed = resolveSeed(o.seed);
  } catch (e) {
    fail((e as Error).message, TypeError);
  }
  optionalType(o, 'sampler', (v) => typeof v === 'string', 'a sampler name (a string)');
  optionalType(o, 'schedule', (v) => typeof v === 'string', `one of ${scheduleNames.map((n) => `'${n}'`).join(', ')}`);
  optionalType(o, 'image', (v) => typeof v === 'string' || v instanceof Uint8Array, 'a file path or the bytes of an image (Buffer)');
  optionalType(o, 'latents', (v) => v instanceof Tensor, 'a Tensor');
  optionalType(o, 'initLatents', (v) => v instanceof Tensor, 'a Tensor');
  optionalType(o, 'onProgress', (v) => typeof v === 'function', 'a function');
  optionalType(o, 'signal', (v) => v instanceof AbortSignal, 'an AbortSignal');
  optionalType(o, 'idleDevice', (v) => typeof v === 'string', "a device name such as 'cpu'");
  optionalType(o, 'decode', (v) => typeof v === 'boolean', 'true or false');
  optionalType(o, 'decoder', (v) => v === 'vae' || v === 'taesd', "'vae' or 'taesd'");
  optionalType(o, 'previewEvery', (v) => typeof v === 'number' && Number.isInteger(v) && v >= 1, 'a whole number of model evaluations, 1 or more');
  optionalType(o, 'vaeTiling', (v) => typeof v === 'boolean' || v === 'auto', "true, false or 'auto'");
  optionalType(o, 'emphasis', (v) => EMPHASIS.includes(v as Emphasis), `one of ${EMPHASIS.map((e) => `'${e}'`).join(', ')}`);
  optionalType(o, 'embeddingDirs', (v) => Array.isArray(v) && v.every((d) => typeof d === 'string'), 'an array of folder paths');
  optionalType(o, 'loraDirs', (v) => Array.isArray(v) && v.every((d) => typeof d === 'string'), 'an array of folder paths');
  optionalType(o, 'loras', (v) => Array.isArray(v) && v.every((l) => typeof l === 'object' && l !== null && typeof (l as Lora).path === 'string' && (typeof (l as Lora).weight === 'number' || (l as Lora).weight === undefined)), 'an array of { path, weight }');
  optionalType(o, 'padCondUncond', (v) => typeof v === 'boolean' || v === 'v0', "true, false or 'v0'");
  optionalType(o, 'zeroTerminalSnr', (v) => typeof v === 'boolean', 'true or false');
  optionalType(o, 'timestepSpacing', (v) => TIMESTEP_SPACINGS.includes(v as TimestepSpacing), TIMESTEP_SPACINGS.map((v) => `'${v}'`).join(', '));
  const inpaint = inpaintOptions(o);
  const micro = microConditioning(o, traits);
  for (const key of ['denoisingStart', 'denoisingEnd'] as const)
    optionalType(o, key, (v) => typeof v === 'number' && v > 0 && v < 1, 'a fraction of the schedule in (0, 1)');
  if (o.denoisingStart !== undefined && (o.initLatents === undefined || o.image !== undefined))
    fail('denoisingStart continues a run handed over by another model: pass its latents as initLatents (from generate({ denoisingEnd, decode: false })), and no image');
  if ((o.denoisingStart !== undefined || o.denoisingEnd !== undefined) && o.mask !== undefined) fail('denoisingStart/denoisingEnd do not combine with inpainting (mask)');
  if (traits && traits.unetInChannels > traits.latentChannels && !inpaint)
    fail(`this checkpoint is an inpainting model (its UNet takes ${traits.unetInChannels} input channels): pass image and mask (white = repaint)`);
  const clipSkip = o.clipSkip ?? 1;
  if (typeof clipSkip !== 'number') fail(`clipSkip must be a number (1 = the last layer), got ${typeof clipSkip} ${show(clipSkip)}`, TypeError);
  if (!Number.isInteger(clipSkip) || clipSkip < 1) fail(`clipSkip must be a whole number from 1 (the last layer), got ${show(clipSkip)}`);
  if (o.image !== undefined && o.latents !== undefined) fail('pass either image (img2img) or latents (txt2img), not both');
  if (o.initLatents !== undefined && (o.image !== undefined || o.latents !== undefined)) fail('pass one start: image, initLatents (img2img) or latents (txt2img)');
  const steps = positiveInt(o.steps ?? 50, 'steps', Number.MAX_SAFE_INTEGER);
  const batchSize = positiveInt(o.batchSize ?? 1, 'batchSize', LIMITS.images);
  const images = prompts.length * batchSize;
  if (images > LIMITS.images) fail(`${prompts.length} prompts × batchSize ${batchSize} = ${images} images; at most ${LIMITS.images} in one call`);
  const width = dimension(o.width, 'width');
  const height = dimension(o.height, 'height');
  if (width !== undefined && height !== undefined) checkSize({ width, height }, images);
  let sampler: ResolvedSampler;
  let timestepSpacing: TimestepSpacing | undefined;
  try {
    // sgm_uniform is its own spacing ('trailing'): the family's default spacing gives way to it
    const sgmUniform = getSampler(o.sampler ?? 'euler_a', o.schedule).schedule === 'sgm_uniform';
    timestepSpacing = o.timestepSpacing ?? (sgmUniform ? undefined : (traits?.timestepSpacing ?? undefined));
    sampler = resolveSampler(o.sampler ?? 'euler_a', {
      schedule: o.schedule, steps, ...((o.image !== undefined || o.initLatents !== undefined) && o.denoisingStart === undefined ? { strength } : {}),
      zeroTerminalSnr: o.zeroTerminalSnr ?? false, ...(timestepSpacing !== undefined ? { timestepSpacing } : {}), ...(traits ? { prediction: traits.prediction } : {}),
      ...(o.denoisingStart !== undefined ? { denoisingStart: o.denoisingStart } : {}), ...(o.denoisingEnd !== undefined ? { denoisingEnd: o.denoisingEnd } : {}),
    });
    // The family's scheduler config sets the spacing used when none is given (SDXL: 'leading').
    if (traits?.timestepSpacing && !sgmUniform) sampler = { ...sampler, defaultSpacing: traits.timestepSpacing };
  } catch (e) {
    const err = e as Error;
    throw Object.assign(new (err.constructor as ErrorConstructor)(`generate(): ${err.message}`), { cause: e });
  }
  return {
    prompts, negatives, steps, cfgScale, sampler, seed, width, height, batchSize, strength, clipSkip, inpaint, rescaleCfg,
    zeroTerminalSnr: o.zeroTerminalSnr ?? false, timestepSpacing, micro, denoisingStart: o.denoisingStart, denoisingEnd: o.denoisingEnd,
    decoder: o.decoder ?? 'vae', previewEvery: o.previewEvery,
    emphasis: o.emphasis ?? 'original', embeddingDirs: o.embeddingDirs ?? [], padCondUncond: o.padCondUncond ?? false,
    loras: (o.loras ?? []).map((l) => ({ path: l.path, weight: l.weight ?? 1 })), loraDirs: o.loraDirs ?? [],
  };
}

const INPAINT_AREAS: readonly InpaintArea[] = ['whole', 'masked'];

/** The inpainting options' defaults: passing them where they do not apply is allowed (they change nothing). */
export const INPAINT_DEFAULTS = { maskBlur: 0, inpaintArea: 'whole', inpaintPadding: 32 } as const;

/** The inpainting options of a job (undefined without a mask); each refused without the inputs it needs. */
function inpaintOptions(o: GenerateOptions): InpaintOptions | undefined {
  optionalType(o, 'mask', (v) => typeof v === 'string' || v instanceof Uint8Array, 'a file path or the bytes of an image (Buffer), white = repaint');
  optionalType(o, 'inpaintArea', (v) => INPAINT_AREAS.includes(v as InpaintArea), "'whole' or 'masked'");
  const whole = (v: unknown, name: string) => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > LIMITS.side)) fail(`${name} must be a whole number of pixels from 0 to ${LIMITS.side}, got ${show(v)}`);
  };
  whole(o.maskBlur, 'maskBlur');
  whole(o.inpaintPadding, 'inpaintPadding');
  if (o.mask === undefined) {
    const stray = (['maskBlur', 'inpaintArea', 'inpaintPadding'] as const).filter((k) => o[k] !== undefined && o[k] !== INPAINT_DEFAULTS[k]);
    if (stray.length) fail(`${stray.join(', ')} ${stray.length > 1 ? 'apply' : 'applies'} to inpainting only: pass mask (and image), or leave ${stray.length > 1 ? 'them' : 'it'} out`);
    return undefined;
  }
  if (o.image === undefined) fail('mask needs the image to inpaint: pass image too (the mask says which of its pixels to repaint, white = repaint)');
  if (o.inpaintArea !== 'masked' && o.inpaintPadding !== undefined && o.inpaintPadding !== INPAINT_DEFAULTS.inpaintPadding)
    fail("inpaintPadding applies to inpaintArea 'masked' only: pass inpaintArea: 'masked' too, or leave inpaintPadding out");
  const d = INPAINT_DEFAULTS;
  return { mask: o.mask, maskBlur: o.maskBlur ?? d.maskBlur, area: o.inpaintArea ?? d.inpaintArea, padding: o.inpaintPadding ?? d.inpaintPadding };
}
