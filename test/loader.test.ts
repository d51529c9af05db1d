// Which binary loads with which libtorch, and what a user is told when none can: run in child
// processes, as an app would load the package.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fakeLibtorch, REPO_ROOT, tmpDir } from './helpers';
import { cpuPrebuild, pythonTorch } from './prebuild';

/** Loads dist/ in a fresh Node and prints systemInfo(); returns exit code, the info, stderr. */
function load(env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(path.join(REPO_ROOT, 'dist'))}).systemInfo()))`], {
    encoding: 'utf8', env: { ...process.env, SDTORCH_BINARY: '', SDTORCH_VARIANT: '', LIBTORCH: '', ...env }, timeout: 120000,
  });
  return { code: r.status, info: r.status === 0 ? JSON.parse(r.stdout) : undefined, err: r.stderr };
}

describe('loading the native addon', function () {
  const t = tmpDir('sdtorch-loader-');
  let prebuild: string;
  let torch: { dir: string; version: string };
  before(function () {
    prebuild = cpuPrebuild();
    torch = pythonTorch();
  });
  after(t.cleanup);

  it('the CPU prebuilt binary loads with the libtorch it was built for, and says which', function () {
    const r = load({ SDTORCH_VARIANT: 'cpu' });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.info.binary, prebuild);
    assert.equal(r.info.variant, 'cpu');
    assert.deepEqual([r.info.torchVersion, r.info.builtForTorch, r.info.libtorch.version], [torch.version, torch.version, torch.version]);
    assert.equal(r.info.libtorch.root, torch.dir);
  });

  it('a libtorch of another version is not loaded; the error lists where it looked and what to do', function () {
    const other = fakeLibtorch(path.join(t.dir, 'other'), '2.99.0');
    const r = load({ SDTORCH_VARIANT: 'cpu', LIBTORCH: other });
    assert.equal(r.code, 1);
    assert.match(r.err, /Error: sdtorch could not load its native addon \(linux-x64\)/);
    assert.ok(r.err.includes(`needs libtorch ${torch.version} (cpu); none found`), r.err);
    assert.ok(r.err.includes(`LIBTORCH: 2.99.0 cpu at ${other}`), r.err);
    for (const fix of ['npx sdtorch setup', `pip install torch==${torch.version}`, 'npx sdtorch build', 'npm install-scripts approve sdtorch && npm rebuild sdtorch']) {
      assert.ok(r.err.includes(fix), `missing "${fix}" in:\n${r.err}`);
    }
    assert.doesNotMatch(r.err, /Segmentation|Aborted|core dumped/);
  });

  it('the addon itself refuses a libtorch other than the one it was built for', function () {
    // The same binary, told it was built for 2.99.0: the version it compares against is a string in it.
    const bytes = fs.readFileSync(prebuild);
    const patched = Buffer.from(bytes.toString('latin1').replaceAll(torch.version, '2.99.0'.padEnd(torch.version.length, '.')), 'latin1');
    assert.notDeepEqual(patched, bytes);
    const file = path.join(t.dir, 'sdtorch.node');
    fs.writeFileSync(file, patched);
    const r = load({ SDTORCH_BINARY: file, LIBTORCH: torch.dir });
    assert.equal(r.code, 1);
    assert.ok(r.err.includes(`built for libtorch 2.99.0, but libtorch ${torch.version} is loaded (${path.join(torch.dir, 'lib', 'libtorch_cpu.so')})`), r.err);
    assert.match(r.err, /rebuild against this one: npx sdtorch build/);
  });

  it('SDTORCH_VARIANT naming a variant that is not shipped says which are', function () {
    const r = load({ SDTORCH_VARIANT: 'cu999' });
    assert.equal(r.code, 1);
    assert.match(r.err, /SDTORCH_VARIANT=cu999: there is no such prebuilt binary \(shipped for linux-x64: [^)]*cpu[^)]*\)/);
  });
});
