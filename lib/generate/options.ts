// generate() options: their types, defaults and validation. A whole job is resolved and checked
// here, once, before any work starts (the sampler, its schedule and steps included).
import { resolveSampler, type ResolvedSampler } from '../sampling/registry';
import type { Tensor } from '../tensor';

export interface Progress {
  step: number;
  total: number;
  elapsedMs: number;
  /** Model evaluations per second so far. */
  itPerSec: number;
  etaMs: number;
}

export interface GenerateOptions {
  prompt: string | string[];
  negativePrompt?: string | string[];
  steps?: number;
  cfgScale?: number;
  /** A sampler name (see samplerNames) or an A1111 display name such as "DPM++ 2M Karras". */
  sampler?: string;
  schedule?: 'default' | 'karras';
  /** Same seed, same image. A random one is drawn when omitted (and returned). */
  seed?: number | bigint;
  width?: number;
  height?: number;
  /** Images per prompt. */
  batchSize?: number;
  /** img2img input: a file path or encoded image bytes (any format sharp reads). */
  image?: string | Buffer;
  /** img2img: how much of the schedule to run (1 = ignore the image). */
  strength?: number;
  /** Starting noise [B,4,H/8,W/8] instead of drawing it from the seed (txt2img). */
  latents?: Tensor;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Where networks wait while another stage runs (e.g. 'cpu' to save GPU memory). */
  idleDevice?: string;
  /** Decode to PNGs (default true); false returns latents only. */
  decode?: boolean;
  /**
   * VAE in overlapping 512-pixel tiles: memory of one tile at any size. 'auto' (default) tiles
   * images over 1024x1024; results below that are untouched.
   */
  vaeTiling?: boolean | 'auto';
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
}

function fail(msg: string): never {
  throw new RangeError(`generate(): ${msg}`);
}

const positiveInt = (v: number, name: string) => {
  if (!Number.isInteger(v) || v < 1) fail(`${name} must be a positive integer, got ${v}`);
  return v;
};

const dimension = (v: number | undefined, name: string) => {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 8 || v % 8 !== 0) fail(`${name} must be a positive multiple of 8, got ${v} (try ${Math.max(8, Math.round(v / 8) * 8)})`);
  return v;
};

export function resolveOptions(o: GenerateOptions): ResolvedOptions {
  const prompts = typeof o.prompt === 'string' ? [o.prompt] : o.prompt;
  if (!Array.isArray(prompts) || prompts.length === 0 || prompts.some((p) => typeof p !== 'string'))
    fail('prompt must be a string or a non-empty array of strings');
  const neg = o.negativePrompt ?? '';
  const negatives = typeof neg === 'string' ? prompts.map(() => neg) : neg;
  if (negatives.length !== prompts.length) fail(`negativePrompt has ${negatives.length} entries for ${prompts.length} prompts`);
  const cfgScale = o.cfgScale ?? 7.5;
  if (!Number.isFinite(cfgScale)) fail(`cfgScale must be a number, got ${cfgScale}`);
  const strength = o.strength ?? 0.8;
  if (!(strength > 0 && strength <= 1)) fail(`strength must be in (0, 1], got ${strength}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (typeof seed === 'number' && (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER))
    fail(`seed must be a non-negative integer, got ${seed}`);
  if (typeof seed === 'bigint' && (seed < 0n || seed >= 2n ** 64n)) fail('seed must be in [0, 2^64)');
  if (o.image !== undefined && o.latents !== undefined) fail('pass either image (img2img) or latents (txt2img), not both');
  const steps = positiveInt(o.steps ?? 50, 'steps');
  let sampler: ResolvedSampler;
  try {
    sampler = resolveSampler(o.sampler ?? 'euler_a', o.schedule, steps, o.image !== undefined ? strength : undefined);
  } catch (e) {
    const err = e as Error;
    throw Object.assign(new (err.constructor as ErrorConstructor)(`generate(): ${err.message}`), { cause: e });
  }
  return {
    prompts,
    negatives,
    steps,
    cfgScale,
    sampler,
    seed,
    width: dimension(o.width, 'width'),
    height: dimension(o.height, 'height'),
    batchSize: positiveInt(o.batchSize ?? 1, 'batchSize'),
    strength,
  };
}
