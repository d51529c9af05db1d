// Progress.denoised (live previews): each evaluation's clean-latents estimate comes from the
// denoiser's x̂0 of the network output, so it reads ε and v models alike. Checked where the answer
// is known: a sampler whose last step goes to σ = 0 ends exactly on the last evaluation's estimate.
import assert from 'node:assert/strict';
import * as sd from '../lib';
import { relErrTensor as relErr } from './helpers';
import { tinyCheckpoint } from './tiny';

describe('Progress.denoised: the denoiser x̂0 of every evaluation (tiny checkpoint)', function () {
  for (const prediction of ['epsilon', 'v'] as const) {
    describe(`${prediction} prediction`, function () {
      let pipe: sd.Pipeline;
      before(async function () {
        pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', prediction });
      });
      after(() => pipe?.dispose());

      const runs: Array<{ sampler: string; zeroTerminalSnr?: boolean; timestepSpacing?: 'trailing' }> = [
        { sampler: 'euler' },
        { sampler: 'euler_a' },
        { sampler: 'dpmpp_2m' },
        ...(prediction === 'v' ? [{ sampler: 'euler', zeroTerminalSnr: true, timestepSpacing: 'trailing' as const }] : []),
      ];
      for (const run of runs) {
        it(`${run.sampler}${run.zeroTerminalSnr ? ', zero terminal SNR, trailing' : ''}: the final latents are the last estimate; every estimate is finite`, async function () {
          let last: sd.Tensor | undefined;
          let calls = 0;
          const res = await pipe.generate({
            prompt: 'a cat', width: 32, height: 32, steps: 4, seed: 9, decode: false, ...run,
            onProgress: (p) => {
              const x0 = p.denoised!();
              assert.deepEqual(x0.shape, [1, 4, 32 / pipe.vaeScale, 32 / pipe.vaeScale]);
              assert.ok((x0.toArray() as Float32Array).every(Number.isFinite), `step ${p.step}: a non-finite estimate`);
              calls++;
              last?.dispose();
              last = x0;
            },
          });
          assert.equal(calls, 4);
          const err = relErr(res.latents, last!);
          assert.ok(err < 1e-5, `relative error ${err}`);
          last!.dispose();
        });
      }
    });
  }
});
