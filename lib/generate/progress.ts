// Progress reports for generate(): evaluations done, rate and time left, and live previews.
import type { RgbImage } from '../image/io';
import type { Tensor } from '../tensor';
import type { Progress } from './options';

/** Previews every `every` evaluations and at the last, made from the clean-latents estimate by `make`. */
export interface PreviewPlan {
  every: number;
  make: (denoised: Tensor) => Promise<RgbImage | undefined>;
}

/**
 * An onStep callback for a sampler that reports to `onProgress` (if any), timed from now. A preview
 * is made inside the step (the sampler waits for it), so it shows that step's estimate.
 */
export function progressReporter(
  total: number, onProgress?: (p: Progress) => void, preview?: PreviewPlan,
): (step: number, total: number, denoised: () => Tensor) => void | Promise<void> {
  const started = performance.now();
  return (step, _total, denoised) => {
    if (!onProgress) return;
    const elapsedMs = performance.now() - started;
    const itPerSec = step / (elapsedMs / 1000);
    const report: Progress = { step, total, elapsedMs, itPerSec, etaMs: ((total - step) / itPerSec) * 1000, denoised };
    if (!preview || (step % preview.every !== 0 && step !== total)) return onProgress(report);
    const x0 = denoised();
    return preview
      .make(x0)
      .then((image) => onProgress(image ? { ...report, preview: image } : report))
      .finally(() => x0.dispose());
  };
}
