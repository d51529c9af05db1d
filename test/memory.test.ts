// Loading is memory-mapped: a 4.3 GB checkpoint must not need its size (let alone twice it) in RAM.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ensureWeights, repoRoot } from './weights';

// Peak RSS (MB) of a fresh Node process that runs `body` with `sd` = the library.
function peakRss(body: string): number {
  const script = `require('ts-node/register/transpile-only'); const sd = require(${JSON.stringify(path.join(repoRoot, 'lib'))});
    (async () => { ${body}; console.log(process.resourceUsage().maxRSS / 1024); })().catch((e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync(process.execPath, ['-e', script], { cwd: repoRoot, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.trim().split('\n').pop());
}

describe('memory while loading the 4.3 GB fp32 checkpoint', function () {
  before(() => ensureWeights());

  it('loadTensors maps the file instead of reading it (peak RSS < 1 GB)', function () {
    const mb = peakRss(`const t = await sd.loadTensors(${JSON.stringify(ensureWeights().safetensors)}); if (Object.keys(t).length < 1130) throw new Error('few tensors')`);
    assert.ok(mb < 1024, `peak RSS ${mb} MB`);
  });

  it('loadPipeline on CPU in fp32 uses the mapped weights in place (peak RSS < 1 GB)', function () {
    const mb = peakRss(`const p = await sd.loadPipeline(${JSON.stringify(ensureWeights().safetensors)}, { device: 'cpu' }); p.dispose()`);
    assert.ok(mb < 1024, `peak RSS ${mb} MB`);
  });

  it('the .ckpt is mapped too (peak RSS < 1 GB)', function () {
    const mb = peakRss(`const t = await sd.loadTensors(${JSON.stringify(ensureWeights().ckpt)}); if (Object.keys(t).length < 1130) throw new Error('few tensors')`);
    assert.ok(mb < 1024, `peak RSS ${mb} MB`);
  });

  // 4.3 GB of fp32 weights + the 2.1 GB fp16 file's pages read through the map (file-backed, reclaimable).
  it('converting the fp16 file to fp32 costs one fp32 copy plus the mapped file, not more (peak RSS < 7 GB)', function () {
    const mb = peakRss(`const p = await sd.loadPipeline(${JSON.stringify(ensureWeights().fp16)}, { device: 'cpu', dtype: 'float32' }); p.dispose()`);
    assert.ok(mb < 7 * 1024, `peak RSS ${mb} MB`);
  });
});
