// Runs one JobSpec on this process's device: the checkpoint it names (loaded on demand, one at a
// time, with the TAESD of the store's folder for its family when there is one), A1111's n_iter loop
// with skip and interrupt, progress with live previews (TAESD, else the cheap approximation). Used by the
// in-process queue and by `sdtorch worker`; the server never touches tensors itself.
import { loadPipeline, type LoadOptions, type Pipeline } from '../generate/pipeline';
import type { GenerateOptions, Progress } from '../generate/options';
import { encodePng } from '../image/png';
import { modelHash } from '../models/hash';
import { findTaesd } from '../models/taesd';
import { jobTimestamp, type JobControl, type JobProgress, type JobResult, type JobSpec } from './job';
import type { ModelStore } from './models';

export interface RunnerOptions {
  device?: string;
  dtype?: LoadOptions['dtype'];
  /** A name for this runner in results (the worker's). */
  name?: string;
}

/**
 * generate()'s inpainting options of a job with a mask (A1111's defaults: blur 4, "Only masked",
 * padding 0; the padding belongs to "Only masked" alone, as generate() requires).
 */
function inpaintOptions(spec: JobSpec & { mask: string }): Pick<GenerateOptions, 'mask' | 'maskBlur' | 'inpaintArea' | 'inpaintPadding'> {
  const area = spec.inpaintArea ?? 'masked';
  return { mask: Buffer.from(spec.mask, 'base64'), maskBlur: spec.maskBlur ?? 4, inpaintArea: area, ...(area === 'masked' ? { inpaintPadding: spec.inpaintPadding ?? 0 } : {}) };
}

export class Runner {
  private pipe: Pipeline | undefined;
  private loaded: { file: string; vae?: string } | undefined;
  /** The SDXL refiner of the last job that asked for one, kept for the next (both stay in memory). */
  private refiner: { file: string; pipe: Pipeline } | undefined;

  constructor(
    readonly store: ModelStore,
    readonly options: RunnerOptions = {},
  ) {}

  /** The pipeline of `checkpoint` (default: the one loaded, else the first listed) with `vae`. */
  async pipeline(checkpoint?: string, vae?: string): Promise<Pipeline> {
    const ckpt = checkpoint !== undefined ? this.store.findCheckpoint(checkpoint) : this.loaded ? { filename: this.loaded.file } : this.store.checkpoints[0];
    if (ckpt === undefined) throw Object.assign(new Error(checkpoint !== undefined ? `checkpoint '${checkpoint}' is not in this worker's models` : 'no checkpoint: start with --weights FILE or --models DIR'), { statusCode: 404 });
    const vaeFile = vae !== undefined && vae !== 'Automatic' && vae !== 'None' ? this.store.findVae(vae)?.filename : undefined;
    if (vae !== undefined && vae !== 'Automatic' && vae !== 'None' && vaeFile === undefined) throw Object.assign(new Error(`VAE '${vae}' is not in this worker's VAE folder`), { statusCode: 404 });
    if (this.pipe && this.loaded?.file === ckpt.filename && this.loaded.vae === vaeFile) return this.pipe;
    this.pipe?.dispose();
    this.pipe = undefined;
    const load: LoadOptions = { device: this.options.device ?? 'auto', ...(this.options.dtype ? { dtype: this.options.dtype } : {}), ...(vaeFile ? { vae: vaeFile } : {}) };
    this.pipe = await this.withTaesd(await loadPipeline(ckpt.filename, load));
    this.loaded = { file: ckpt.filename, ...(vaeFile ? { vae: vaeFile } : {}) };
    return this.pipe;
  }

  /** The refiner pipeline of `checkpoint` (loaded once, kept while the jobs ask for it). */
  private async refinerPipeline(checkpoint: string): Promise<Pipeline> {
    const ckpt = this.store.findCheckpoint(checkpoint);
    if (ckpt === undefined) throw Object.assign(new Error(`refiner checkpoint '${checkpoint}' is not in this worker's models`), { statusCode: 404 });
    if (this.refiner?.file === ckpt.filename) return this.refiner.pipe;
    this.refiner?.pipe.dispose();
    this.refiner = undefined;
    const pipe = await this.withTaesd(await loadPipeline(ckpt.filename, { device: this.options.device ?? 'auto', ...(this.options.dtype ? { dtype: this.options.dtype } : {}) }));
    this.refiner = { file: ckpt.filename, pipe };
    return pipe;
  }

  /** `pipe` with the TAESD folder's files for its family loaded, when the folder has them (previews by TAESD). */
  private async withTaesd(pipe: Pipeline): Promise<Pipeline> {
    const files = this.store.dirs.taesd === undefined ? undefined : findTaesd(this.store.dirs.taesd, pipe.family);
    if (files === undefined) return pipe;
    try {
      await pipe.loadTaesd(files);
    } catch (e) {
      pipe.dispose();
      throw e;
    }
    return pipe;
  }

  /** Runs the job's n_iter batches; an interrupt keeps what is done, a skip drops one iteration. */
  async run(spec: JobSpec, control: JobControl, onProgress?: (p: JobProgress) => void): Promise<JobResult> {
    const started = jobTimestamp();
    const pipe = await this.pipeline(spec.checkpoint, spec.vae);
    const refiner = spec.refiner ? { pipeline: await this.refinerPipeline(spec.refiner.checkpoint), switchAt: spec.refiner.switchAt } : undefined;
    const out: JobResult = {
      images: [], infotexts: [], seeds: [], prompts: [], negatives: [], width: spec.width, height: spec.height,
      modelName: pipe.name, modelHash: await modelHash(pipe.path), jobTimestamp: started, interrupted: false,
      inpaintingConditioning: pipe.family.unetInChannels > pipe.family.latentChannels,
      ...(this.options.name ? { worker: this.options.name } : {}),
    };
    const images = (spec.initImages ?? []).map((b) => Buffer.from(b, 'base64'));
    // A1111: one init image is repeated batch_size times; several make the batch, one each.
    const perIteration = images.length > 1 ? images.map((image) => ({ image, batchSize: 1 })) : [{ image: images[0], batchSize: spec.batchSize }];
    const jobCount = spec.nIter * perIteration.length;
    let jobNo = 0;
    for (let n = 0; n < spec.nIter; n++) {
      for (const part of perIteration) {
        if (control.interrupted) break;
        const signal = control.nextIteration();
        const seed = spec.seed + n * spec.batchSize;
        const report = (p: Progress) => this.progress(p, { jobNo, jobCount, jobTimestamp: started }, onProgress);
        try {
          const res = await pipe.generate({ ...this.generateOptions(spec, part, seed, signal, report), ...(refiner ? { refiner } : {}) });
          out.images.push(...res.images.map((b) => b.toString('base64')));
          out.infotexts.push(...res.infotexts);
          for (let i = 0; i < res.images.length; i++) {
            out.seeds.push(seed);
            out.prompts.push(spec.prompt);
            out.negatives.push(spec.negativePrompt);
          }
          if (res.images.length) {
            const png = Buffer.from(out.images.at(-1)!, 'base64');
            out.width = png.readUInt32BE(16);
            out.height = png.readUInt32BE(20);
          }
        } catch (e) {
          if (!signal.aborted) throw e; // skipped or interrupted: go on with what there is
        }
        jobNo++;
      }
    }
    out.interrupted = control.interrupted;
    return out;
  }

  private generateOptions(spec: JobSpec, part: { image?: Buffer; batchSize: number }, seed: number, signal: AbortSignal, onProgress: (p: Progress) => void): GenerateOptions {
    const dirs = this.store.dirs;
    return {
      prompt: spec.prompt,
      negativePrompt: spec.negativePrompt,
      steps: spec.steps,
      cfgScale: spec.cfgScale,
      sampler: spec.sampler,
      seed,
      width: spec.width,
      height: spec.height,
      batchSize: part.batchSize,
      clipSkip: spec.clipSkip,
      signal,
      onProgress,
      ...(spec.previewEvery > 0 ? { previewEvery: spec.previewEvery } : {}),
      ...(dirs.lora ? { loraDirs: [dirs.lora] } : {}),
      ...(dirs.embeddings ? { embeddingDirs: [dirs.embeddings] } : {}),
      ...(part.image ? { image: part.image, strength: spec.strength ?? 0.75 } : {}),
      ...(spec.mask ? inpaintOptions({ ...spec, mask: spec.mask }) : {}),
      ...(spec.hires ? { hires: spec.hires } : {}),
    };
  }

  private lastPreview = 0;

  private progress(p: Progress, at: { jobNo: number; jobCount: number; jobTimestamp: string }, onProgress?: (p: JobProgress) => void): void {
    if (!onProgress) return;
    const report: JobProgress = { ...at, step: p.step, steps: p.total, etaSeconds: Number.isFinite(p.etaMs) ? p.etaMs / 1000 : 0 };
    if (p.preview === undefined) return onProgress(report);
    // The PNG is made off the step; a preview overtaken by a newer one is dropped.
    const n = ++this.lastPreview;
    encodePng(p.preview)
      .then((png) => onProgress(n === this.lastPreview ? { ...report, preview: png.toString('base64') } : report))
      .catch(() => onProgress(report));
  }

  /** The text encoder width of the loaded checkpoint (768 for SD 1.x), for /embeddings. */
  get textEncoderWidth(): number {
    return this.pipe?.family.textEncoders[0]?.width ?? 768;
  }

  dispose(): void {
    this.pipe?.dispose();
    this.pipe = undefined;
    this.loaded = undefined;
    this.refiner?.pipe.dispose();
    this.refiner = undefined;
  }
}
