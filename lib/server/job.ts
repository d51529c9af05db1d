// What travels between the HTTP edge, the queue and the workers: plain JSON (it crosses Redis).

/** One txt2img/img2img request, checked and resolved at the edge (seeds fixed, images decoded to PNG/base64). */
export interface JobSpec {
  kind: 'txt2img' | 'img2img';
  /** A checkpoint title or alias from the listing; absent: the worker's current one. */
  checkpoint?: string;
  /** A VAE name from the listing; absent: the checkpoint's own. */
  vae?: string;
  prompt: string;
  negativePrompt: string;
  /** The first image's seed (fixed: -1 resolved at the edge); iteration n uses seed + n·batchSize. */
  seed: number;
  subseed: number;
  steps: number;
  cfgScale: number;
  /** The A1111 sampler label, schedule folded in ("DPM++ 2M Karras"). */
  sampler: string;
  width: number;
  height: number;
  batchSize: number;
  nIter: number;
  clipSkip: number;
  /** img2img: denoising strength. */
  strength?: number;
  /** img2img: init images, base64 of their files. */
  initImages?: string[];
  /** Inpainting: the mask as a base64 PNG, white = repaint (already inverted when asked). */
  mask?: string;
  maskBlur?: number;
  inpaintArea?: 'whole' | 'masked';
  inpaintPadding?: number;
  /** SDXL refiner (A1111's refiner_checkpoint, refiner_switch_at): a checkpoint title from the listing. */
  refiner?: { checkpoint: string; switchAt: number };
  /** Hires fix: steps 0 = the first pass's. */
  hires?: { scale: number; steps: number; strength: number; upscaler: 'latent' | 'lanczos' };
  /** A live preview every this many model evaluations (0: none). */
  previewEvery: number;
}

/** A finished job: what the HTTP answer is made of. */
export interface JobResult {
  /** base64 PNGs with their infotext. */
  images: string[];
  infotexts: string[];
  /** Per image: its seed, prompt and negative prompt. */
  seeds: number[];
  prompts: string[];
  negatives: string[];
  width: number;
  height: number;
  modelName: string;
  modelHash: string;
  /** The checkpoint is an inpainting model (its UNet takes the mask and masked image): A1111's is_using_inpainting_conditioning. */
  inpaintingConditioning?: boolean;
  /** "%Y%m%d%H%M%S" when the job started, as A1111's state.job_timestamp. */
  jobTimestamp: string;
  interrupted: boolean;
  /** Which worker ran it (for logs and tests). */
  worker?: string;
}

/** Progress of the running job, as a worker reports it. */
export interface JobProgress {
  jobNo: number;
  jobCount: number;
  step: number;
  steps: number;
  /** Seconds left in this job, from the current rate. */
  etaSeconds: number;
  /** base64 PNG of the current estimate: decoded by the TAESD when one is loaded, else the cheap latent -> RGB approximation. */
  preview?: string;
  jobTimestamp: string;
}

/**
 * A worker's failure as it crosses Redis, where only a message travels: the HTTP status of an
 * input the library refused at run time (RangeError, TypeError: 422) goes in front, "[422] ...".
 */
export function failureMessage(e: Error & { statusCode?: number }): string {
  const status = e.statusCode ?? (e instanceof RangeError || e instanceof TypeError ? 422 : undefined);
  return status === undefined ? e.message : `[${status}] ${e.message}`;
}

/** The error a failure message stands for, with its status (if any) back in statusCode. */
export function failureError(message: string): Error & { statusCode?: number } {
  const m = /^\[(\d{3})\] ([\s\S]*)$/.exec(message);
  return Object.assign(new Error(m ? m[2] : message), { name: 'JobFailed' }, m ? { statusCode: Number(m[1]) } : {});
}

/** Interrupt (the whole job) and skip (its current iteration), A1111's /interrupt and /skip. */
export class JobControl {
  private readonly interruptCtl = new AbortController();
  private iteration = new AbortController();

  get signal(): AbortSignal {
    return this.interruptCtl.signal;
  }
  get interrupted(): boolean {
    return this.interruptCtl.signal.aborted;
  }
  interrupt(reason = 'interrupted'): void {
    this.interruptCtl.abort(new Error(reason));
    this.iteration.abort(new Error(reason));
  }
  skip(): void {
    this.iteration.abort(new Error('skipped'));
  }
  /** A fresh signal for the next iteration: aborted by skip() or interrupt(). */
  nextIteration(): AbortSignal {
    this.iteration = new AbortController();
    if (this.interrupted) this.iteration.abort(this.interruptCtl.signal.reason);
    return this.iteration.signal;
  }
}

/** A1111's job_timestamp format. */
export function jobTimestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}
