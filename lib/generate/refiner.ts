// SDXL base + refiner, as diffusers' "ensemble of expert denoisers" runs them (and A1111's
// "Refiner" with "Switch at"): the base runs the high-noise part of the schedule and hands its
// still-noisy latents to the refiner, which runs the rest (denoising_end / denoising_start).
import { setPngText } from '../image/png';
import { modelHash } from '../models/hash';
import { extractExtraNetworks } from '../text/prompt';
import { evaluations } from './hires';
import type { GenerateOptions, Progress } from './options';
import type { GenerateResult, Pipeline } from './pipeline';

export interface RefinerOptions {
  /**
   * The refiner, loaded with loadPipeline (sd_xl_refiner_1.0 or a fine-tune of it), or a function
   * that loads it, called once the base pass is done (and the refiner it returns disposed at the
   * end): where base and refiner do not fit in memory together, it can dispose the base first.
   */
  pipeline: Pipeline | (() => Promise<Pipeline>);
  /** The fraction of the schedule the base runs (A1111's "Refiner switch at"; diffusers' denoising_end), in (0, 1); default 0.8. */
  switchAt?: number;
}

const fail = (msg: string, type: ErrorConstructor = RangeError): never => {
  throw new type(`generate(): refiner.${msg}`);
};

/** generate({ refiner }): the base to switchAt, the refiner from there (see the file's comment). */
export async function generateRefined(pipe: Pipeline, options: GenerateOptions, run: (o: GenerateOptions) => Promise<GenerateResult>): Promise<GenerateResult> {
  const { refiner, onProgress, decode, ...rest } = options;
  const given = refiner?.pipeline as unknown;
  if (typeof refiner !== 'object' || refiner === null || !(typeof given === 'function' || typeof (given as Pipeline | undefined)?.generate === 'function'))
    fail('must be { pipeline, switchAt } with the refiner loaded by loadPipeline (or a function loading it)', TypeError);
  const switchAt = refiner!.switchAt ?? 0.8;
  if (typeof switchAt !== 'number' || !(switchAt > 0 && switchAt < 1)) fail(`switchAt must be in (0, 1), got ${String(switchAt)}`);
  if (pipe.family.timeIds.length === 0) throw new TypeError(`generate(): refiner applies to SDXL models; this one is ${pipe.family.label}`);
  if (rest.mask !== undefined || rest.hires !== undefined || rest.denoisingStart !== undefined || rest.denoisingEnd !== undefined)
    fail('applies to txt2img and img2img: leave out mask, hires, denoisingStart and denoisingEnd', TypeError);
  // The refiner takes the prompts without extra-network tags (the base's LoRAs do not fit it), the
  // aesthetic scores, and no target size (its conditioning has none); the base takes no scores.
  const untag = (p: string | string[] | undefined) => (p === undefined ? undefined : Array.isArray(p) ? p.map((t) => extractExtraNetworks(t).text) : extractExtraNetworks(p).text);
  const { aestheticScore: _a, negativeAestheticScore: _n, ...first } = rest;
  const { image: _image, strength: _strength, latents: _noise, loras: _loras, loraDirs: _dirs, width: _w, height: _h, targetSize: _t, negativeTargetSize: _nt, ...shared } = rest;
  const second: GenerateOptions = { ...shared, prompt: untag(rest.prompt)!, ...(rest.negativePrompt !== undefined ? { negativePrompt: untag(rest.negativePrompt)! } : {}), denoisingStart: switchAt };
  const firstTotal = evaluations(pipe, { ...first, denoisingEnd: switchAt }, rest.image !== undefined);
  // The refiner's share, counted with the base's scheduler (both SDXL: the same one), before the refiner is loaded.
  const { aestheticScore: _a2, negativeAestheticScore: _n2, ...counted } = second;
  const total = firstTotal + evaluations(pipe, counted, true);
  const report = (offset: number) => (onProgress ? (p: Progress) => onProgress({ ...p, step: offset + p.step, total, etaMs: (p.etaMs / Math.max(p.total - p.step, 1)) * (total - offset - p.step) }) : undefined);

  const base = await run({ ...first, denoisingEnd: switchAt, decode: false, onProgress: report(0) });
  const owned = typeof given === 'function';
  const other = owned ? await (given as () => Promise<Pipeline>)() : (given as Pipeline);
  let result: GenerateResult;
  try {
    if (other.family.timeIds.length === 0 || other.family.latentScale !== pipe.family.latentScale || other.vaeScale !== pipe.vaeScale)
      fail(`pipeline must be an SDXL refiner (or another SDXL model) sharing this model's latent space; it is ${other.family.label}`, TypeError);
    result = await other.generate({ ...second, seed: base.seed, initLatents: base.latents, ...(decode !== undefined ? { decode } : {}), onProgress: report(firstTotal) });
  } finally {
    if (owned) other.dispose();
  }
  // The infotext names the base as the model and the refiner as A1111 does ("Refiner: name [hash], Refiner switch at: 0.8").
  const [hash, refinerHash] = await Promise.all([modelHash(pipe.path), modelHash(other.path)]);
  const otherName = other.name;
  const infotexts = result.infotexts.map((t) =>
    t.replace(/Model hash: [^,\n]*, Model: [^,\n]*/, `Model hash: ${hash}, Model: ${pipe.name}`) + `, Refiner: ${otherName} [${refinerHash}], Refiner switch at: ${switchAt}`);
  return { ...result, infotexts, images: result.images.map((png, i) => setPngText(png, 'parameters', infotexts[i]!)) };
}
