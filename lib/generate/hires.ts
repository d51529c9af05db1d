// Hires fix, as A1111's txt2img does it: a first pass at the asked size, its result upscaled
// (the latents bilinearly, or the decoded image with Lanczos), then img2img at the larger size
// with the same seed (modules/processing.py, StableDiffusionProcessingTxt2Img.sample_hr_pass).
import { encodePng, setPngText } from '../image/png';
import { resizeLanczos } from '../image/lanczos';
import { toImageData } from '../image/io';
import { Tensor } from '../tensor';
import { resolveOptions, type GenerateOptions, type Progress } from './options';
import type { GenerateResult, Pipeline } from './pipeline';

export type HiresUpscaler = 'latent' | 'lanczos';

export interface HiresOptions {
  /** Size factor of the second pass (A1111's hr_scale), default 2. */
  scale?: number;
  /** Steps of the second pass; 0 or absent: the first pass's steps (A1111's hr_second_pass_steps). */
  steps?: number;
  /** Denoising strength of the second pass, default 0.7. */
  strength?: number;
  /** 'latent' (A1111's "Latent": bilinear on the latents, the default) or 'lanczos' (the decoded image). */
  upscaler?: HiresUpscaler;
}

interface ResolvedHires {
  scale: number;
  steps: number;
  strength: number;
  upscaler: HiresUpscaler;
}

const fail = (msg: string, type: ErrorConstructor = RangeError): never => {
  throw new type(`generate(): hires.${msg}`);
};

function resolveHires(h: HiresOptions, steps: number): ResolvedHires {
  if (typeof h !== 'object' || h === null) fail(`must be an object { scale, steps, strength, upscaler }`, TypeError);
  const scale = h.scale ?? 2;
  if (typeof scale !== 'number' || !(scale >= 1 && scale <= 8)) fail(`scale must be a number from 1 to 8, got ${String(scale)}`);
  const hiresSteps = h.steps || steps;
  if (!Number.isInteger(hiresSteps) || hiresSteps < 1) fail(`steps must be a positive whole number (0: the first pass's), got ${String(h.steps)}`);
  const strength = h.strength ?? 0.7;
  if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) fail(`strength must be in (0, 1], got ${String(strength)}`);
  const upscaler = h.upscaler ?? 'latent';
  if (upscaler !== 'latent' && upscaler !== 'lanczos') fail(`upscaler must be 'latent' or 'lanczos', got ${String(upscaler)}`, TypeError);
  return { scale, steps: hiresSteps, strength, upscaler };
}

/**
 * torch.nn.functional.interpolate(x, size, mode="bilinear", align_corners=False, antialias=False)
 * for a float32 [B, C, H, W] tensor (latents are small: done on the CPU).
 */
export function interpolateBilinear(x: Tensor, height: number, width: number): Tensor {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const src = x.to('cpu', 'float32').toArray() as Float32Array;
  const out = new Float32Array(b * c * height * width);
  const taps = (outSize: number, inSize: number) =>
    Array.from({ length: outSize }, (_, o) => {
      const pos = Math.max((o + 0.5) * (inSize / outSize) - 0.5, 0);
      const i0 = Math.min(Math.floor(pos), inSize - 1);
      return { i0, i1: Math.min(i0 + 1, inSize - 1), f: pos - i0 };
    });
  const ys = taps(height, h);
  const xs = taps(width, w);
  for (let p = 0; p < b * c; p++) {
    const plane = p * h * w;
    for (let oy = 0; oy < height; oy++) {
      const { i0: y0, i1: y1, f: fy } = ys[oy]!;
      for (let ox = 0; ox < width; ox++) {
        const { i0: x0, i1: x1, f: fx } = xs[ox]!;
        const top = src[plane + y0 * w + x0]! * (1 - fx) + src[plane + y0 * w + x1]! * fx;
        const bottom = src[plane + y1 * w + x0]! * (1 - fx) + src[plane + y1 * w + x1]! * fx;
        out[(p * height + oy) * width + ox] = top * (1 - fy) + bottom * fy;
      }
    }
  }
  return Tensor.from(out, [b, c, height, width]).to(x.device);
}

/**
 * Model evaluations a pass makes (for one progress bar over both passes), its options checked as
 * generate() checks them; `img2img`: a pass whose start (latents or pixels) is only known later.
 */
export function evaluations(pipe: Pipeline, o: GenerateOptions, img2img = false): number {
  // An empty image (a hand-off: one latent) stands for that start: resolveOptions checks its type only, never reads it.
  const start = o.denoisingStart !== undefined ? { initLatents: Tensor.from(new Float32Array(1), [1]) } : { image: Buffer.alloc(0) };
  const r = resolveOptions(img2img ? { ...o, ...start } : o, pipe.family);
  return r.sampler.sampler.evaluations({
    steps: r.steps, schedule: r.sampler.schedule, zeroTerminalSnr: r.zeroTerminalSnr, prediction: pipe.family.prediction,
    ...(r.timestepSpacing !== undefined ? { timestepSpacing: r.timestepSpacing } : {}),
    ...(img2img && r.denoisingStart === undefined ? { strength: r.strength } : {}),
    ...(r.denoisingStart !== undefined ? { denoisingStart: r.denoisingStart } : {}), ...(r.denoisingEnd !== undefined ? { denoisingEnd: r.denoisingEnd } : {}),
  });
}

/** A1111's hires keys, after "Denoising strength", with the first pass's steps and size (as A1111 writes them). */
function hiresInfotext(text: string, first: { width: number; height: number; steps: number }, second: { width: number; height: number }, h: ResolvedHires, stepsGiven: boolean): string {
  const lines = text.split('\n');
  const extra = [`Hires upscale: ${h.scale}`, ...(stepsGiven ? [`Hires steps: ${h.steps}`] : []), `Hires upscaler: ${h.upscaler === 'latent' ? 'Latent' : 'Lanczos'}`];
  const params = lines.at(-1)!.replace(/^Steps: \d+/, `Steps: ${first.steps}`).replace(`Size: ${second.width}x${second.height}`, `Size: ${first.width}x${first.height}`);
  lines[lines.length - 1] = `${params}, ${extra.join(', ')}`;
  return lines.join('\n');
}

/** generate({ hires }): the first pass, the upscale, the second pass (see the file's comment). */
export async function generateHires(pipe: Pipeline, options: GenerateOptions, run: (o: GenerateOptions) => Promise<GenerateResult>): Promise<GenerateResult> {
  const { hires, onProgress, ...rest } = options;
  if (rest.image !== undefined || rest.initLatents !== undefined) fail('applies to txt2img only: leave out image', TypeError);
  const steps = rest.steps ?? 50;
  const h = resolveHires(hires!, steps);
  const f = pipe.vaeScale;
  const width = rest.width ?? pipe.family.defaultSize;
  const height = rest.height ?? pipe.family.defaultSize;
  const target = { width: Math.floor((width * h.scale) / f) * f, height: Math.floor((height * h.scale) / f) * f };
  const prompts = [rest.prompt].flat();
  const negatives = Array.isArray(rest.negativePrompt) ? rest.negativePrompt : prompts.map(() => rest.negativePrompt ?? '');
  const batchSize = rest.batchSize ?? 1;
  // The second pass starts from the first's result: the caller's starting noise (latents) is the first's only.
  const { latents: _noise, ...img2img } = rest;
  const second = { ...img2img, steps: h.steps, strength: h.strength, width: target.width, height: target.height };
  const firstTotal = evaluations(pipe, rest);
  const secondTotal = evaluations(pipe, second, true);
  const total = firstTotal + secondTotal * (h.upscaler === 'latent' ? 1 : prompts.length * batchSize);
  // One progress count over every pass; the time left scaled from the current pass's rate.
  const report = (offset: number) =>
    onProgress ? (p: Progress) => onProgress({ ...p, step: offset + p.step, total, etaMs: (p.etaMs / Math.max(p.total - p.step, 1)) * (total - offset - p.step) }) : undefined;

  const first = await run({ ...rest, decode: false, onProgress: report(0) });
  let result: GenerateResult;
  if (h.upscaler === 'latent') {
    const initLatents = interpolateBilinear(first.latents, target.height / f, target.width / f);
    result = await run({ ...second, seed: first.seed, initLatents, onProgress: report(firstTotal) });
  } else {
    // Each decoded image resized with Pillow's Lanczos, then its own img2img (one image each).
    const decoded = toImageData(await pipe.decode(first.latents));
    const parts: GenerateResult[] = [];
    for (const [i, img] of decoded.entries()) {
      const image = await encodePng(resizeLanczos(img, target.width, target.height));
      const p = Math.floor(i / batchSize);
      parts.push(await run({ ...second, seed: first.seed, prompt: prompts[p]!, negativePrompt: negatives[p]!, image, batchSize: 1, onProgress: report(firstTotal + i * secondTotal) }));
    }
    result = {
      images: parts.flatMap((p) => p.images),
      latents: Tensor.cat(parts.map((p) => p.latents)),
      seed: first.seed,
      infotexts: parts.flatMap((p) => p.infotexts),
    };
  }
  const infotexts = result.infotexts.map((t) => hiresInfotext(t, { width, height, steps }, target, h, Boolean(hires!.steps)));
  return { ...result, infotexts, images: result.images.map((png, i) => setPngText(png, 'parameters', infotexts[i]!)) };
}
