// The package as users get it: `npm pack`, installed into an empty project under npm's default
// install-script policy, used from CommonJS, ESM and TypeScript; its install step on a machine
// without libtorch; and the source build where no prebuilt binary fits.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as sd from '../lib';
import { python, REPO_ROOT, relErr, tmpDir } from './helpers';
import { cpuPrebuild, pythonTorch } from './prebuild';
import { tinyCheckpoint } from './tiny';

interface Run { code: number | null; out: string; err: string }

/** Runs a command without blocking this process (the test's HTTP server must keep answering). */
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((ok, fail) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, SDTORCH_BINARY: '', SDTORCH_VARIANT: '', LIBTORCH: '', ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', fail);
    child.on('close', (code) => ok({ code, out, err }));
  });
}

const GENERATE = { prompt: 'a cat', steps: 2, width: 16, height: 16, seed: 7, sampler: 'euler' };

const APP_JS = `const sd = require('sdtorch');
(async () => {
  const pipe = await sd.loadPipeline(process.env.WEIGHTS);
  const r = await pipe.generate(${JSON.stringify(GENERATE)});
  const { variant, binary, libtorch } = sd.systemInfo();
  console.log(JSON.stringify({ variant, binary, libtorch, latents: Array.from(r.latents.toArray()), png: r.images[0].subarray(1, 4).toString() }));
})();
`;

const APP_MJS = `import sd, { loadPipeline, systemInfo } from 'sdtorch';
const pipe = await loadPipeline(process.env.WEIGHTS);
const r = await pipe.generate(${JSON.stringify(GENERATE)});
const { variant, binary } = systemInfo();
console.log(JSON.stringify({ variant, binary, same: sd.loadPipeline === loadPipeline, latents: Array.from(r.latents.toArray()), png: r.images[0].subarray(1, 4).toString() }));
`;

const TYPES_MTS = `import { loadPipeline, samplerNames, type GenerateOptions } from 'sdtorch';
const options: GenerateOptions = { prompt: 'a cat', steps: 2, sampler: samplerNames[0] };
const pipe = await loadPipeline('model.safetensors', { device: 'cpu' });
const { images, seed } = await pipe.generate(options);
const first: Buffer = images[0];
console.log(first.length, seed);
`;

describe('the npm package, installed from its tarball into an empty project', function () {
  const t = tmpDir('sdtorch-pkg-');
  const app = path.join(t.dir, 'app');
  const bin = path.join(t.dir, 'bin'); // a PATH with node alone: no python3, no cmake, no compiler
  const torch = pythonTorch();
  let weights: string;
  let expected: number[];
  let prebuild: string;
  let install: Run;

  const installStep = (env: NodeJS.ProcessEnv) => run(process.execPath, [path.join(app, 'node_modules', 'sdtorch', 'scripts', 'install.js')], app, env);
  const node = (file: string, env: NodeJS.ProcessEnv = {}) => run(process.execPath, [file], app, { WEIGHTS: weights, ...env });
  const parse = (r: Run) => {
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out);
  };

  before(async function () {
    prebuild = cpuPrebuild();
    weights = await tinyCheckpoint();
    const pipe = await sd.loadPipeline(weights);
    expected = Array.from((await pipe.generate(GENERATE)).latents.toArray() as Float32Array);
    pipe.dispose();
    const pack = await run('npm', ['pack', '--pack-destination', t.dir], REPO_ROOT);
    assert.equal(pack.code, 0, pack.err);
    const tgz = path.join(t.dir, pack.out.trim().split('\n').at(-1)!);
    assert.match(pack.err, new RegExp(`prebuilds/${process.platform}-${process.arch}/${path.basename(prebuild).replaceAll('.', '\\.')}`));
    fs.mkdirSync(app);
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    fs.writeFileSync(path.join(app, 'app.js'), APP_JS);
    fs.writeFileSync(path.join(app, 'app.mjs'), APP_MJS);
    install = await run('npm', ['install', tgz, '--no-audit', '--no-fund', '--prefer-offline'], app);
    assert.equal(install.code, 0, install.err);
  });
  after(t.cleanup);

  it('npm blocks its install script by default, and the prebuilt binary needs none: require() works', async function () {
    assert.match(install.err, /sdtorch@[\d.]+ \(install: node scripts\/install\.js\)/);
    assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'sdtorch', 'build')), 'nothing was built');
    const r = parse(await node('app.js'));
    assert.equal(r.variant, 'cpu');
    assert.equal(r.binary, path.join(app, 'node_modules', 'sdtorch', 'prebuilds', `${process.platform}-${process.arch}`, path.basename(prebuild)));
    assert.equal(r.libtorch.root, torch.dir);
    assert.equal(r.png, 'PNG');
    assert.ok(relErr(r.latents, expected) < 1e-6, `latents differ from the source tree's: ${relErr(r.latents, expected)}`);
  });

  it('ESM import gives the same named and default exports and the same image', async function () {
    const r = parse(await node('app.mjs'));
    assert.equal(r.variant, 'cpu');
    assert.equal(r.same, true);
    assert.ok(relErr(r.latents, expected) < 1e-6);
  });

  it('TypeScript finds its types from ESM, and they catch a wrong call', async function () {
    fs.writeFileSync(path.join(app, 'good.mts'), TYPES_MTS);
    fs.writeFileSync(path.join(app, 'bad.mts'), TYPES_MTS.replace("{ device: 'cpu' }", "{ device: 42 }"));
    const tsc = (file: string) => run(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--skipLibCheck',
      '--module', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(REPO_ROOT, 'node_modules', '@types'), file], app);
    const good = await tsc('good.mts');
    assert.equal(good.code, 0, good.out + good.err);
    const bad = await tsc('bad.mts');
    assert.equal(bad.code, 2);
    assert.match(bad.out, /bad\.mts\(3,\d+\): error TS2322: Type 'number' is not assignable to type/);
  });

  it('approved, its install script keeps the prebuilt binary and says which libtorch it found', async function () {
    const approve = await run('npm', ['install-scripts', 'approve', 'sdtorch'], app);
    assert.equal(approve.code, 0, approve.err);
    assert.match(fs.readFileSync(path.join(app, 'package.json'), 'utf8'), /"allowScripts"/);
    const r = await run('npm', ['rebuild', 'sdtorch', '--foreground-scripts'], app);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.concat(r.err).includes(`sdtorch: using the prebuilt binary prebuilds/${process.platform}-${process.arch}/${path.basename(prebuild)} with libtorch ${torch.version} from ${torch.dir} (python3)`), r.out + r.err);
    assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'sdtorch', 'build')));
  });

  it('a prebuilt binary that does not load makes the install step build from source, and say why', async function () {
    const file = path.join(app, 'node_modules', 'sdtorch', 'prebuilds', `${process.platform}-${process.arch}`, path.basename(prebuild));
    const good = fs.readFileSync(file);
    fs.writeFileSync(file, 'not a shared library');
    try {
      // No cmake on PATH: the build it falls back to fails, loudly.
      const r = await installStep({ PATH: bin, LIBTORCH: torch.dir });
      assert.equal(r.code, 1);
      assert.ok(r.err.includes(`WARNING: ${path.basename(prebuild)} did not load with libtorch ${torch.version} from ${torch.dir}: ${file}`), r.err);
      assert.match(r.err, /invalid ELF header|file too short/);
      assert.match(r.err, /building the native addon from source instead/);
      assert.match(r.err, /sdtorch: the native build failed/);
    } finally {
      fs.writeFileSync(file, good);
    }
  });

  describe('on a machine without libtorch', function () {
    // PATH holds node only: no python3, so no Python torch; the cache starts empty.
    const cache = path.join(t.dir, 'cache');
    const zip = path.join(t.dir, 'libtorch.zip');
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.url!);
      if (req.url !== `/cpu/libtorch-shared-with-deps-${torch.version}%2Bcpu.zip`) return void res.writeHead(404).end();
      res.writeHead(200, { 'Content-Length': fs.statSync(zip).size });
      fs.createReadStream(zip).pipe(res);
    });
    let env: NodeJS.ProcessEnv;

    before(async function () {
      // A libtorch zip laid out as pytorch.org's, holding the libraries of Python's torch.
      python(`
import glob, os, sys, zipfile
torch, version, out = sys.argv[1:]
with zipfile.ZipFile(out, 'w') as z:
    for f in ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'] + [os.path.basename(p) for p in glob.glob(torch + '/lib/libgomp*')]:
        z.write(os.path.join(torch, 'lib', f), 'libtorch/lib/' + f)
    z.write(os.path.join(torch, 'share/cmake/Torch/TorchConfigVersion.cmake'), 'libtorch/share/cmake/Torch/TorchConfigVersion.cmake')
    z.writestr('libtorch/build-version', version + '+cpu\\n')
`, [torch.dir, torch.version, zip]);
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
      env = { PATH: bin, PYTHON: '', SDTORCH_CACHE: cache, SDTORCH_LIBTORCH_MIRROR: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    });

    it('with downloads skipped, the install step warns and does not fail; require() then says what to do', async function () {
      const r = await installStep({ ...env, SDTORCH_SKIP_DOWNLOAD: '1' });
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, new RegExp(`WARNING: ${path.basename(prebuild).replaceAll('.', '\\.')} needs libtorch ${torch.version} \\(cpu\\); SDTORCH_SKIP_DOWNLOAD=1`));
      assert.match(r.err, /require\('sdtorch'\) will fail until libtorch is there: run `npx sdtorch setup`/);
      assert.deepEqual(requests, []);
      const app = await node('app.js', env);
      assert.equal(app.code, 1);
      assert.match(app.err, /needs libtorch [\d.]+ \(cpu\); none found[\s\S]*npx sdtorch setup/);
    });

    it('the install step downloads the matching libtorch into the cache, and the prebuilt binary runs with it', async function () {
      const r = await installStep(env);
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, new RegExp(`sdtorch: downloading libtorch ${torch.version} \\(cpu\\) from http://127\\.0\\.0\\.1:\\d+/cpu/`));
      assert.ok(r.err.includes(`with libtorch ${torch.version} from ${path.join(cache, `libtorch-${torch.version}-cpu`, 'libtorch')} (cache)`), r.err);
      assert.equal(requests.length, 1);
      const out = parse(await node('app.js', env));
      assert.deepEqual([out.variant, out.libtorch.source], ['cpu', 'cache']);
      assert.ok(relErr(out.latents, expected) < 1e-6);
    });
  });

  // Last: a local build, once made, is what loads.
  describe('where no prebuilt binary fits', function () {
    it('require() says how to build, and `npx sdtorch build` does', async function () {
      const pkg = path.join(app, 'node_modules', 'sdtorch');
      fs.renameSync(path.join(pkg, 'prebuilds'), path.join(pkg, 'prebuilds.off'));
      const r = await node('app.js');
      assert.equal(r.code, 1);
      assert.match(r.err, /No prebuilt binary fits linux-x64 \(shipped: none\) and no local build exists/);
      assert.match(r.err, /build it from source: npx sdtorch build/);
      assert.match(r.err, /npm install-scripts approve sdtorch && npm rebuild sdtorch/);

      const build = await run('npx', ['sdtorch', 'build'], app);
      assert.equal(build.code, 0, build.err.slice(-3000));
      assert.match(build.err, /sdtorch: building against libtorch [\d.]+ \(cpu\) from .* \(python3\)/);
      const built = parse(await node('app.js'));
      assert.deepEqual([built.variant, built.binary], ['source', path.join(pkg, 'build', 'Release', 'sdtorch.node')]);
      assert.ok(relErr(built.latents, expected) < 1e-6);

      // A local build is the user's choice: it wins over a prebuilt binary.
      fs.renameSync(path.join(pkg, 'prebuilds.off'), path.join(pkg, 'prebuilds'));
      assert.equal(parse(await node('app.js')).variant, 'source');
    });
  });
});
