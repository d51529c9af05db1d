// A v-prediction model through generate(): CFG and guidance rescale on v, zero terminal SNR and
// timestep spacing, against diffusers' StableDiffusionPipeline with prediction_type "v_prediction"
// on the tiny checkpoint (scripts/make_v_pipeline_fixture.py).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as sd from '../lib';
import { fixture, relErrTensor as relErr } from './helpers';
import { tinyCheckpoint } from './tiny';

interface Run {
  sampler: string;
  steps: number;
  spacing: 'leading' | 'linspace' | 'trailing';
  zeroTerminalSnr: boolean;
  rescale: number;
  seed: number;
  shape: number[];
  latents: string;
}
const ref = JSON.parse(fs.readFileSync(fixture('v-pipeline-reference.json'), 'utf8')) as { runs: Run[] };
const floats = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};

describe('generate() with a v-prediction model equals diffusers (tiny checkpoint read as v)', function () {
  let pipe: sd.Pipeline;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu', prediction: 'v' });
    assert.equal(pipe.family.prediction, 'v');
  });
  after(() => pipe?.dispose());

  for (const r of ref.runs) {
    it(`${r.sampler}, ${r.spacing}${r.zeroTerminalSnr ? ', zero terminal SNR' : ''}, rescale ${r.rescale}, ${r.steps} steps: final latents within 1e-4`, async function () {
      const res = await pipe.generate({
        prompt: 'a cat', negativePrompt: '', cfgScale: 7.5, width: 32, height: 32, decode: false, sampler: r.sampler, steps: r.steps, seed: r.seed,
        timestepSpacing: r.spacing, zeroTerminalSnr: r.zeroTerminalSnr, rescaleCfg: r.rescale,
      });
      const err = relErr(res.latents, sd.Tensor.from(floats(r.latents), r.shape));
      assert.ok(err < 1e-4, `relative error ${err}`);
    });
  }
});
