// A1111 infotext ("parameters"): the text it writes into PNGs and reads back.
import type { HiresOptions } from '../generate/hires';

export interface InfotextParams {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** A1111 display name, e.g. "Euler a", "DPM++ 2M Karras". */
  sampler: string;
  cfgScale: number;
  seed: number | bigint;
  width: number;
  height: number;
  /** First 10 hex digits of the checkpoint's sha256 (see modelHash). */
  modelHash?: string;
  /** Checkpoint name, conventionally the file name without extension. */
  modelName?: string;
  /** A separately loaded VAE: the first 10 hex digits of its sha256 ("VAE hash"). */
  vaeHash?: string;
  /** A separately loaded VAE: its file name ("VAE"). */
  vaeName?: string;
  /** img2img: "Denoising strength". */
  strength?: number;
  /** Written (with batchPos) only when 2 or more, as older A1111 did. */
  batchSize?: number;
  batchPos?: number;
  /** More "key: value" pairs, appended in order (A1111's extra_generation_params). */
  extra?: Record<string, string | number>;
}

/** A1111's `quote`: values with a comma, colon or newline become JSON strings. */
const quote = (v: string) => (/[,:\n]/.test(v) ? JSON.stringify(v) : v);

/**
 * The A1111 infotext, laid out as its `create_infotext`:
 * `prompt\nNegative prompt: ...\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512,
 * Model hash: abcdef1234, Model: name` (the negative line only when non-empty; numbers as Python
 * prints them: 7, 7.5).
 */
export function formatInfotext(p: InfotextParams): string {
  const batched = p.batchSize !== undefined && p.batchSize >= 2;
  const params: [string, string | number | bigint | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', p.sampler],
    ['CFG scale', p.cfgScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.modelName],
    ['VAE hash', p.vaeHash],
    ['VAE', p.vaeName],
    ['Batch size', batched ? p.batchSize : undefined],
    ['Batch pos', batched ? p.batchPos : undefined],
    ['Denoising strength', p.strength],
    ...Object.entries(p.extra ?? {}),
  ];
  const line = params
    .filter((kv): kv is [string, string | number | bigint] => kv[1] !== undefined && kv[1] !== '')
    .map(([k, v]) => (k === v ? k : `${k}: ${quote(String(v))}`))
    .join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${line}`.trim();
}

export interface ParsedInfotext {
  prompt: string;
  negativePrompt: string;
  /** The "key: value" pairs of the last line, unquoted, e.g. { Steps: "20", Sampler: "Euler a", Size: "512x512" }. */
  params: Record<string, string>;
}

const PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

/** Parses an A1111 infotext as its `parse_generation_parameters` does. */
export function parseInfotext(text: string): ParsedInfotext {
  const lines = text.trim().split('\n');
  let last = lines.pop() ?? '';
  if ([...last.matchAll(PARAM)].length < 3) {
    lines.push(last);
    last = '';
  }
  let prompt = '';
  let negativePrompt = '';
  let inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice(16).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }
  const params: Record<string, string> = {};
  for (const [, key, value] of last.matchAll(PARAM)) {
    if (key === undefined || value === undefined || key === '__proto__') continue;
    const v = unquote(value.trim());
    if (v !== '') params[key] = v; // A1111 drops keys with no value ("Operations: , ")
  }
  return { prompt, negativePrompt, params };
}

function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    return typeof parsed === 'string' ? parsed : v;
  } catch {
    return v;
  }
}

/** What an infotext says, as generate() options (the "key: value" pairs A1111 writes, typed). */
export interface InfotextOptions {
  prompt: string;
  negativePrompt: string;
  steps?: number;
  /** The A1111 display name, e.g. "DPM++ 2M Karras" (generate() accepts it as is). */
  sampler?: string;
  cfgScale?: number;
  /** A number, or a decimal string when above 2^53 - 1 (generate() takes both exactly). */
  seed?: number | string;
  width?: number;
  height?: number;
  /** img2img's "Denoising strength" (with a hires fix it is the second pass's: see `hires`). */
  strength?: number;
  /**
   * A1111's hires fix: "Hires upscale" (or "Hires resize" to a size of the same aspect), "Hires
   * steps", "Hires upscaler" ("Latent" or "Lanczos", the ones sdtorch has; absent: "Latent") and the
   * "Denoising strength" of the second pass. Left out, with `strength`, for another upscaler (an
   * ESRGAN) or a resize to another aspect: the keys stay in `params`.
   */
  hires?: HiresOptions;
  /** "Clip skip". */
  clipSkip?: number;
  /** "Emphasis": 'no-norm' for "No norm", 'ignore', 'none' (absent: A1111's default, 'original'). */
  emphasis?: 'original' | 'no-norm' | 'ignore' | 'none';
  /** "Mask blur". */
  maskBlur?: number;
  /** "Inpaint area": 'masked' for "Only masked", 'whole' for "Whole picture". */
  inpaintArea?: 'whole' | 'masked';
  /** "Masked area padding". */
  inpaintPadding?: number;
  /** "Noise Schedule: Zero Terminal SNR" (A1111's key). */
  zeroTerminalSnr?: boolean;
  /** "Guidance rescale" (diffusers' guidance_rescale; A1111 has no key for it). */
  rescaleCfg?: number;
  /** "Timestep spacing" (diffusers' timestep_spacing; A1111 has no key for it). */
  timestepSpacing?: 'leading' | 'linspace' | 'trailing';
  /** Every "key: value" pair, unparsed (Model, Model hash, Lora hashes, ...). */
  params: Record<string, string>;
}

const num = (v: string | undefined): number | undefined => (v !== undefined && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined);

/**
 * Reads an A1111 infotext (a PNG's "parameters") into generate() options: prompt, negative prompt,
 * Steps, Sampler (with A1111's separate "Schedule type" folded in: "DPM++ 2M" + "Karras", "Euler a" +
 * "SGM Uniform"; generate() takes the name so, as A1111 1.9+ reads it), CFG
 * scale, Seed, Size, Denoising strength, Clip skip, Emphasis, Mask blur, Inpaint area, Masked area
 * padding, Noise Schedule, Guidance rescale, Timestep spacing, the hires fix (Hires upscale, steps,
 * upscaler). Fields it cannot read are left out;
 * all are in `params`.
 */
export function infotextOptions(text: string): InfotextOptions {
  const { prompt, negativePrompt, params } = parseInfotext(text);
  const out: InfotextOptions = { prompt, negativePrompt, params };
  const size = /^(\d+)x(\d+)$/.exec(params['Size'] ?? '');
  const seed = params['Seed'];
  const schedule = params['Schedule type'];
  const fields: Partial<InfotextOptions> = {
    steps: num(params['Steps']),
    sampler: params['Sampler'] && schedule && schedule.toLowerCase() !== 'automatic' ? `${params['Sampler']} ${schedule}` : params['Sampler'],
    cfgScale: num(params['CFG scale']),
    seed: seed !== undefined && /^\d+$/.test(seed) ? (Number(seed) <= Number.MAX_SAFE_INTEGER ? Number(seed) : seed) : undefined,
    width: size ? Number(size[1]) : undefined,
    height: size ? Number(size[2]) : undefined,
    strength: num(params['Denoising strength']),
    clipSkip: num(params['Clip skip']),
    emphasis: ({ Original: 'original', 'No norm': 'no-norm', Ignore: 'ignore', None: 'none' } as const)[params['Emphasis'] as 'Original'],
    maskBlur: num(params['Mask blur']),
    inpaintArea: ({ 'Only masked': 'masked', 'Whole picture': 'whole' } as const)[params['Inpaint area'] as 'Only masked'],
    inpaintPadding: num(params['Masked area padding']),
    zeroTerminalSnr: params['Noise Schedule'] === 'Zero Terminal SNR' ? true : undefined,
    rescaleCfg: num(params['Guidance rescale']),
    timestepSpacing: (['leading', 'linspace', 'trailing'] as const).find((v) => v === params['Timestep spacing']),
  };
  // A1111 writes "Hires upscale: 2", or "Hires resize: 1024x1536" for a target size; sdtorch's hires
  // takes one scale, so a resize is read when both sides scale alike.
  const resize = /^(\d+)x(\d+)$/.exec(params['Hires resize'] ?? '');
  const resizeScale = resize && size && Number(resize[1]) * Number(size[2]) === Number(resize[2]) * Number(size[1]) ? Number(resize[1]) / Number(size[1]) : undefined;
  const hiresScale = num(params['Hires upscale']) ?? resizeScale;
  if (params['Hires upscale'] !== undefined || params['Hires resize'] !== undefined) {
    // The strength is the second pass's; an upscaler sdtorch lacks leaves the hires fix (and it) out.
    const upscaler = ({ Latent: 'latent', Lanczos: 'lanczos' } as const)[(params['Hires upscaler'] ?? 'Latent') as 'Latent'];
    const hiresSteps = num(params['Hires steps']);
    fields.hires = hiresScale !== undefined && upscaler !== undefined
      ? { scale: hiresScale, upscaler, ...(hiresSteps !== undefined ? { steps: hiresSteps } : {}), ...(fields.strength !== undefined ? { strength: fields.strength } : {}) }
      : undefined;
    fields.strength = undefined;
  }
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) Object.assign(out, { [k]: v });
  return out;
}
