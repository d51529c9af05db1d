// Progress reports for generate(): evaluations done, rate and time left.
import type { Tensor } from '../tensor';
import type { Progress } from './options';

/** An onStep callback for a sampler that reports to `onProgress` (if any), timed from now. */
export function progressReporter(total: number, onProgress?: (p: Progress) => void): (step: number, total: number, denoised: () => Tensor) => void {
  const started = performance.now();
  return (step, _total, denoised) => {
    const elapsedMs = performance.now() - started;
    const itPerSec = step / (elapsedMs / 1000);
    onProgress?.({ step, total, elapsedMs, itPerSec, etaMs: ((total - step) / itPerSec) * 1000, denoised });
  };
}
