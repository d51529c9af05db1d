// SDXL base + refiner, as diffusers' "ensemble of expert denoisers" runs them (and A1111's
// "Refiner" with "Switch at"): the base runs the high-noise part of the schedule and hands its
// still-noisy latents to the refiner, which runs the rest (denoising_end / denoising_start).
import { setPngText } from '../image/png';
import { modelHash } from '../models/hash';
import { extractExtraNetworks } from '../text/prompt';
import { evaluations } from './hires';
import { KEEP_INFOTEXTS, type GenerateOptions, type Progress, type StageOptions } from './options';
import { requireTaesd } from '../models/taesd';
import type { GenerateResult, Pipeline } from './pipeline';

export interface RefinerOptions {
  /**
   * The refiner, loaded with loadPipeline (sd_xl_refiner_1.0 or a fine-tune of it), or a function
   * that loads it, called once the base pass is done; the pipeline such a function returns is
   * disposed when the run ends. Where base and refiner do not fit in memory together, the function
   * can dispose the base first.
   */
  pipeline: Pipeline | (() => Promise<Pipeline>);
  /** The fraction of the schedule the base runs (A1111's "Refiner switch at"; diffusers' denoising_end), in (0, 1); default 0.8. */
  switchAt?: number;
}

const fail = (msg: string, type: ErrorConstructor = RangeError): never => {
  throw new type(`generate(): refiner${msg}`);
};

/** A refiner pipeline checked against the base: SDXL (time ids), the same latent space, not the base itself. */
function checkRefiner(pipe: Pipeline, other: unknown): Pipeline {
  const p = other as Pipeline;
  if (typeof p?.generate !== 'function' || typeof p.family !== 'object' || typeof p.dispose !== 'function')
    fail('.pipeline must be a pipeline from loadPipeline (or a function that returns one)', TypeError);
  if (p === pipe) fail('.pipeline is the base pipeline itself: pass the refiner', TypeError);
  if (p.family.timeIds.length === 0 || p.family.latentScale !== pipe.family.latentScale || p.vaeScale !== pipe.vaeScale)
    fail(`.pipeline must be an SDXL refiner (or another SDXL model) sharing this model's latent space; it is ${p.family.label}`, TypeError);
  return p;
}

/** generate({ refiner }): the base to switchAt, the refiner from there (see the file's comment). */
export async function generateRefined(pipe: Pipeline, options: GenerateOptions, run: (o: GenerateOptions) => Promise<GenerateResult>): Promise<GenerateResult> {
  const { refiner, onProgress, decode, ...rest } = options;
  if (pipe.family.timeIds.length === 0) fail(` applies to SDXL models; this one is ${pipe.family.label}`, TypeError);
  if (typeof refiner !== 'object' || refiner === null) fail(' must be { pipeline, switchAt }', TypeError);
  const given = refiner!.pipeline as unknown;
  const loader = typeof given === 'function' ? (given as () => Promise<Pipeline>) : undefined;
  if (!loader) checkRefiner(pipe, given);
  // The refiner's pass decodes: decoder 'taesd' needs its TAESD (a loaded refiner is checked when it comes).
  const taesd = rest.decoder === 'taesd' && decode !== false;
  if (!loader && taesd) requireTaesd(given as Pipeline);
  const switchAt = refiner!.switchAt ?? 0.8;
  if (typeof switchAt !== 'number' || !(switchAt > 0 && switchAt < 1)) fail(`.switchAt must be in (0, 1), got ${String(switchAt)}`);
  if (rest.mask !== undefined || rest.hires !== undefined || rest.denoisingStart !== undefined || rest.denoisingEnd !== undefined)
    fail(' applies to txt2img and img2img: leave out mask, hires, denoisingStart and denoisingEnd', TypeError);
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

  // The base keeps its infotext (prompt with its tags, LoRA hashes, strength): the image's parameters are the base's.
  const stage: StageOptions = { ...first, denoisingEnd: switchAt, decode: false, onProgress: report(0), [KEEP_INFOTEXTS]: true };
  const base = await run(stage);
  let other = given as Pipeline;
  if (loader) {
    const loaded = await loader();
    try {
      other = checkRefiner(pipe, loaded);
      if (taesd) requireTaesd(other);
    } catch (e) {
      if (loaded !== pipe && typeof (loaded as Partial<Pipeline>)?.dispose === 'function') loaded.dispose();
      throw e;
    }
  }
  let result: GenerateResult;
  try {
    result = await other.generate({ ...second, seed: base.seed, initLatents: base.latents, ...(decode !== undefined ? { decode } : {}), onProgress: report(firstTotal) });
  } finally {
    if (loader) other.dispose();
  }
  if (decode === false) return { ...result, infotexts: [] };
  // A1111's refiner keys after the base's parameters.
  const refinerHash = await modelHash(other.path);
  const infotexts = base.infotexts.map((t) => `${t}, Refiner: ${other.name} [${refinerHash}], Refiner switch at: ${switchAt}`);
  return { ...result, infotexts, images: result.images.map((png, i) => setPngText(png, 'parameters', infotexts[i]!)) };
}
