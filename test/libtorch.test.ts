// Finding libtorch, picking a prebuilt binary, and downloading libtorch into the cache, against
// fake libtorch folders and a local HTTP server.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { describe as describeLibtorch, download, downloadUrl, driverCudaMajor, fits, lookup, type Libtorch } from '../lib/native/libtorch';
import { orderPrebuilds, type Prebuild } from '../lib/native/load';
import { fakeLibtorch, python, tmpDir } from './helpers';

/** Sets environment variables for the duration of `fn`. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  set(vars);
  const restore = () => set(saved);
  try {
    const r = fn();
    if (r instanceof Promise) return r.finally(restore) as T;
    restore();
    return r;
  } catch (e) {
    restore();
    throw e;
  }
}

const pythonTorchDir = () => python('import os, torch; print(os.path.dirname(torch.__file__))').trim();

describe('libtorch lookup', function () {
  const t = tmpDir('sdtorch-lt-');
  after(t.cleanup);

  it('describes a pip torch, a libtorch zip folder, and refuses other folders', function () {
    const pip = describeLibtorch(pythonTorchDir(), 'python3')!;
    assert.equal(pip.version, python('import torch; print(torch.__version__.split("+")[0])').trim());
    assert.equal(pip.flavor, 'cpu');
    const cu = describeLibtorch(fakeLibtorch(path.join(t.dir, 'cu'), '2.14.1', 'cu130'), 'x')!;
    assert.deepEqual([cu.version, cu.flavor], ['2.14.1', 'cu130']);
    assert.equal(describeLibtorch(t.dir, 'x'), null);
  });

  it('a binary fits a libtorch of its own version; a CUDA one only with the same CUDA major', function () {
    const lt = (version: string, flavor: string): Libtorch => ({ root: '/x', version, flavor, source: 'x' });
    assert.ok(fits(lt('2.13.0', 'cpu'), '2.13.0', 'cpu'));
    assert.ok(fits(lt('2.13.0', 'cu128'), '2.13.0', 'cpu'));
    assert.ok(fits(lt('2.13.0', 'cu126'), '2.13.0', 'cu128'));
    assert.ok(!fits(lt('2.13.1', 'cpu'), '2.13.0', 'cpu'));
    assert.ok(!fits(lt('2.14.1', 'cpu'), '2.14.1', 'cu130'));
    assert.ok(!fits(lt('2.14.1', 'cu128'), '2.14.1', 'cu130'));
  });

  it('LIBTORCH, when set, is the only place looked at', function () {
    const dir = fakeLibtorch(path.join(t.dir, 'env'), '2.99.0');
    const r = withEnv({ LIBTORCH: dir }, () => lookup());
    assert.deepEqual(r.found.map((l) => [l.version, l.source]), [['2.99.0', 'LIBTORCH']]);
    const bad = withEnv({ LIBTORCH: t.dir }, () => lookup());
    assert.equal(bad.found.length, 0);
    assert.match(bad.looked[0], /^LIBTORCH=.*: not a libtorch folder/);
  });

  it('the cache comes before Python torch, and the search stops at the first fit', function () {
    const cache = path.join(t.dir, 'cache');
    fakeLibtorch(path.join(cache, 'libtorch-2.98.0-cpu', 'libtorch'), '2.98.0');
    const r = withEnv({ LIBTORCH: undefined, Torch_DIR: undefined, SDTORCH_CACHE: cache }, () => lookup());
    assert.deepEqual(r.found.map((l) => l.source), ['cache', 'python3']);
    assert.match(r.looked[0], /^cache .*: 2\.98\.0 cpu at /);
    const stop = withEnv({ LIBTORCH: undefined, Torch_DIR: undefined, SDTORCH_CACHE: cache }, () => lookup((lt) => lt.version === '2.98.0'));
    assert.equal(stop.looked.length, 1);
  });

  it('reads the driver CUDA version from /proc/driver/nvidia/version', function () {
    assert.equal(driverCudaMajor('NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:40 UTC 2025\n'), 13);
    assert.equal(driverCudaMajor('NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build\n'), 12);
    assert.equal(driverCudaMajor('NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01\n'), 11);
    assert.equal(driverCudaMajor(''), null);
  });
});

describe('choosing a prebuilt binary', function () {
  const all: Prebuild[] = ['cpu', 'cu128', 'cu130'].map((flavor) => ({ file: `sdtorch.${flavor}.node`, flavor, torch: '2.13.0' }));
  const order = (driver: number | null, variant?: string) => orderPrebuilds(all, driver, variant).map((p) => p.flavor);

  it('CUDA variants the driver runs, newest first, then CPU', function () {
    assert.deepEqual(order(13), ['cu130', 'cu128', 'cpu']);
    assert.deepEqual(order(12), ['cu128', 'cpu']);
    assert.deepEqual(order(null), ['cpu']);
  });

  it('SDTORCH_VARIANT keeps only that one', function () {
    assert.deepEqual(order(13, 'cpu'), ['cpu']);
    assert.deepEqual(order(null, 'cu128'), ['cu128']);
    assert.deepEqual(order(13, 'cu999'), []);
  });
});

/** Serves one body at any path, or an error, counting requests. */
class ZipServer {
  body: Buffer = Buffer.alloc(0);
  mode: 'ok' | '404' | 'truncate' = 'ok';
  requests: string[] = [];
  url = '';
  private server = http.createServer((req, res) => {
    this.requests.push(req.url!);
    if (this.mode === '404') return void res.writeHead(404).end('not here');
    res.writeHead(200, { 'Content-Length': this.body.length });
    if (this.mode === 'truncate') return void res.write(this.body.subarray(0, this.body.length >> 1), () => res.socket?.destroy());
    res.end(this.body);
  });
  async start() {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop() {
    this.server.closeAllConnections();
    await new Promise((ok) => this.server.close(ok));
  }
}

/** A zip (made by Python's zipfile) of `files`: name -> [text, unix mode]. */
function makeZip(file: string, files: Record<string, [string, number]>): Buffer {
  python(`
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    for name, (text, mode) in json.loads(sys.argv[2]).items():
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        z.writestr(info, text, zipfile.ZIP_DEFLATED)
`, [file, JSON.stringify(files)]);
  return fs.readFileSync(file);
}

describe('downloading libtorch into the cache', function () {
  const t = tmpDir('sdtorch-dl-');
  const server = new ZipServer();
  const cache = path.join(t.dir, 'cache');
  const logs: string[] = [];
  const env = () => ({ SDTORCH_CACHE: cache, SDTORCH_LIBTORCH_MIRROR: server.url });
  const leftovers = () => (fs.existsSync(cache) ? fs.readdirSync(cache).filter((n) => /\.(part|tmp)/.test(n)) : []);
  before(async () => {
    await server.start();
    server.body = makeZip(path.join(t.dir, 'lt.zip'), {
      'libtorch/share/cmake/Torch/TorchConfigVersion.cmake': ['set(PACKAGE_VERSION "2.97.0")\n', 0o100644],
      'libtorch/build-version': ['2.97.0+cpu\n', 0o100644],
      'libtorch/lib/libc10.so': ['not really a library', 0o100755],
    });
  });
  after(async () => {
    await server.stop();
    t.cleanup();
  });
  beforeEach(() => {
    server.requests = [];
    logs.length = 0;
  });

  it('asks pytorch.org for the libtorch zip of a version and variant', function () {
    assert.equal(withEnv({ SDTORCH_LIBTORCH_MIRROR: undefined }, () => downloadUrl('2.13.0', 'cu130')),
      'https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-2.13.0%2Bcu130.zip');
  });

  it('a failed download says why and leaves nothing behind', async function () {
    server.mode = '404';
    await assert.rejects(withEnv(env(), () => download('2.97.0', 'cpu', (l) => logs.push(l))), /\/cpu\/libtorch-shared-with-deps-2\.97\.0%2Bcpu\.zip answered 404/);
    server.mode = 'truncate';
    await assert.rejects(withEnv(env(), () => download('2.97.0', 'cpu', (l) => logs.push(l))), /the download of http:\/\/127\.0\.0\.1:\d+\/cpu\/\S+ broke off after \d+ bytes: terminated \(other side closed\)/);
    assert.deepEqual(leftovers(), []);
    assert.ok(!fs.existsSync(path.join(cache, 'libtorch-2.97.0-cpu')));
    server.mode = 'ok';
  });

  it('unpacks it atomically, keeps file modes, says what it does, and downloads once', async function () {
    const lt = await withEnv(env(), () => download('2.97.0', 'cpu', (l) => logs.push(l)));
    assert.deepEqual([lt.version, lt.flavor, lt.source], ['2.97.0', 'cpu', 'cache']);
    assert.equal(lt.root, path.join(cache, 'libtorch-2.97.0-cpu', 'libtorch'));
    assert.equal(fs.statSync(path.join(lt.root, 'lib', 'libc10.so')).mode & 0o777, 0o755);
    assert.match(logs[0], /^sdtorch: downloading libtorch 2\.97\.0 \(cpu\) from http:\/\/127\.0\.0\.1:\d+\/cpu\//);
    assert.match(logs.at(-1)!, /libtorch 2\.97\.0 \(cpu\) is in /);
    assert.equal(server.requests.length, 1);
    assert.deepEqual(leftovers(), []);
    await withEnv(env(), () => download('2.97.0', 'cpu', (l) => logs.push(l)));
    assert.equal(server.requests.length, 1);
    // and the lookup finds it there
    const found = withEnv({ ...env(), LIBTORCH: undefined, Torch_DIR: undefined }, () => lookup((l) => l.version === '2.97.0'));
    assert.equal(found.found[0].root, lt.root);
  });

  it('refuses a zip that is not a libtorch, or that would write outside its folder', async function () {
    server.body = makeZip(path.join(t.dir, 'other.zip'), { 'README.txt': ['hello', 0o100644] });
    await assert.rejects(withEnv(env(), () => download('2.96.0', 'cpu', () => {})), /is not a libtorch zip/);
    server.body = makeZip(path.join(t.dir, 'evil.zip'), { '../../evil.txt': ['x', 0o100644], 'libtorch/build-version': ['2.96.0+cpu', 0o100644] });
    await assert.rejects(withEnv(env(), () => download('2.96.0', 'cpu', () => {})), /invalid relative path|\.\./);
    assert.ok(!fs.existsSync(path.join(t.dir, 'evil.txt')) && !fs.existsSync(path.join(cache, 'evil.txt')));
    assert.deepEqual(leftovers(), []);
  });
});
