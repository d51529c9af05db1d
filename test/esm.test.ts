// The package from plain JavaScript: require() and ESM import of the compiled dist/.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './weights';

const entry = path.join(repoRoot, 'dist', 'index.js');
const node = (args: string[]) => spawnSync(process.execPath, args, { encoding: 'utf8', cwd: repoRoot });

describe('loading the package from JavaScript', function () {
  it('ESM: named and default imports', function () {
    const r = node(['--input-type=module', '-e',
      `import sd, { Tensor, Generator, randn, loadPipeline, samplerNames } from ${JSON.stringify(entry)};
       if (typeof loadPipeline !== 'function' || sd.Tensor !== Tensor) throw new Error('exports');
       console.log(samplerNames.length, Array.from(randn([2], new Generator(1)).toArray()).map((v) => v.toFixed(4)).join(','));`]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '17 0.6614,0.2669');
  });

  it('CommonJS: require', function () {
    const r = node(['-e', `const sd = require(${JSON.stringify(entry)}); console.log(sd.Tensor.from([1, 2, 3], [3]).mul(2).toArray().join(','));`]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '2,4,6');
  });
});
