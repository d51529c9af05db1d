import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_FILE, DEFAULT_REPO, cacheDir, cachedPath, downloadWeights, resolveWeights } from '../lib/models/hub';
import { tmpDir } from './helpers';

type Mode = 'ok' | 'error500' | 'close' | 'badsha' | 'unauthorized' | 'missing';

/** A stand-in for the Hub's `resolve` endpoint on 127.0.0.1, serving one file. */
class FakeHub {
  mode: Mode = 'ok';
  readonly body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
  readonly requests: http.IncomingHttpHeaders[] = [];
  private server = http.createServer((req, res) => this.handle(req, res));
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests.push(req.headers);
    if (req.url !== `/${DEFAULT_REPO}/resolve/main/${DEFAULT_FILE}`) {
      res.writeHead(404, { 'X-Error-Code': 'RepoNotFound' }).end('no such repo');
      return;
    }
    if (this.mode === 'missing') {
      res.writeHead(404, { 'X-Error-Code': 'EntryNotFound' }).end('Entry not found');
      return;
    }
    if (this.mode === 'unauthorized') {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'Access to model is restricted' }));
      return;
    }
    const sha = createHash('sha256').update(this.mode === 'badsha' ? 'other bytes' : this.body).digest('hex');
    const headers = { ETag: `"${sha}"`, 'Content-Type': 'application/octet-stream' };
    if (req.headers.range === 'bytes=0-0') {
      res.writeHead(206, { ...headers, 'Content-Range': `bytes 0-0/${this.body.length}`, 'Content-Length': 1 }).end(this.body.subarray(0, 1));
      return;
    }
    if (this.mode === 'error500') {
      res.writeHead(500).end('internal error');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': this.body.length });
    if (this.mode === 'close') {
      res.write(this.body.subarray(0, 100_000), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(this.body);
  }
}

const noNetwork: typeof fetch = () => Promise.reject(new Error('the network must not be used here'));

describe('hub', () => {
  let tmp: { dir: string; cleanup: () => void };
  let hub: FakeHub;
  let n = 0;
  /** A fresh cache directory per test. */
  const freshEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ SDTORCH_CACHE: path.join(tmp.dir, `cache-${n++}`), ...extra });
  const leftovers = (env: NodeJS.ProcessEnv) => {
    const dir = path.dirname(cachedPath({ env }));
    return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  };

  before(async () => {
    tmp = tmpDir('sdtorch-hub-');
    hub = new FakeHub();
    await hub.start();
  });
  after(async () => {
    await hub.stop();
    tmp.cleanup();
  });
  beforeEach(() => {
    hub.mode = 'ok';
    hub.requests.length = 0;
  });

  describe('cache location', () => {
    it('SDTORCH_CACHE, else $XDG_CACHE_HOME/sdtorch, else ~/.cache/sdtorch', () => {
      assert.equal(cacheDir({ SDTORCH_CACHE: '/c/sd', XDG_CACHE_HOME: '/x' }), '/c/sd');
      assert.equal(cacheDir({ XDG_CACHE_HOME: '/x' }), '/x/sdtorch');
      assert.equal(cacheDir({}), path.join(os.homedir(), '.cache', 'sdtorch'));
      assert.equal(
        cachedPath({ env: { SDTORCH_CACHE: '/c' } }),
        '/c/stable-diffusion-v1-5--stable-diffusion-v1-5/v1-5-pruned-emaonly.safetensors',
      );
    });
  });

  describe('resolveWeights', () => {
    let local: string;
    let other: string;
    before(() => {
      local = path.join(tmp.dir, 'local.safetensors');
      other = path.join(tmp.dir, 'other.safetensors');
      fs.writeFileSync(local, 'x');
      fs.writeFileSync(other, 'y');
    });

    it('an explicit path wins over SDTORCH_WEIGHTS and the cache', async () => {
      const env = freshEnv({ SDTORCH_WEIGHTS: other });
      fs.mkdirSync(path.dirname(cachedPath({ env })), { recursive: true });
      fs.writeFileSync(cachedPath({ env }), 'cached');
      assert.equal(await resolveWeights({ weights: local, env, fetch: noNetwork }), local);
      assert.equal(await resolveWeights({ env, fetch: noNetwork }), other);
      assert.equal(await resolveWeights({ env: { ...env, SDTORCH_WEIGHTS: '' }, fetch: noNetwork }), cachedPath({ env }));
    });

    it('resolves relative paths', async () => {
      const rel = path.relative(process.cwd(), local);
      assert.equal(await resolveWeights({ weights: rel, env: freshEnv(), fetch: noNetwork }), local);
    });

    it('an explicit path or SDTORCH_WEIGHTS that does not exist is an Error, never a download', async () => {
      const missing = path.join(tmp.dir, 'missing.safetensors');
      await assert.rejects(resolveWeights({ weights: missing, env: freshEnv(), fetch: noNetwork }), (e: Error) =>
        e.message.includes(`Weights file not found: ${missing}`) && e.message.includes('--weights'));
      await assert.rejects(resolveWeights({ env: freshEnv({ SDTORCH_WEIGHTS: missing }), fetch: noNetwork }), /not found: .*missing\.safetensors \(from SDTORCH_WEIGHTS\)/);
      await assert.rejects(resolveWeights({ weights: tmp.dir, env: freshEnv(), fetch: noNetwork }), /is neither a checkpoint file nor a diffusers folder \(no model_index\.json in it\)/);
    });

    it('accepts a diffusers folder (one holding model_index.json), from --weights and SDTORCH_WEIGHTS', async () => {
      const folder = path.join(tmp.dir, 'diffusers-model');
      fs.mkdirSync(folder, { recursive: true });
      fs.writeFileSync(path.join(folder, 'model_index.json'), '{}');
      assert.equal(await resolveWeights({ weights: path.relative(process.cwd(), folder), env: freshEnv(), fetch: noNetwork }), folder);
      assert.equal(await resolveWeights({ env: freshEnv({ SDTORCH_WEIGHTS: folder }), fetch: noNetwork }), folder);
    });

    it('with downloads off (option or HF_HUB_OFFLINE) and nothing cached: says how to pass a local file', async () => {
      for (const [opts, why] of [
        [{ download: false, env: freshEnv() }, 'downloading is off'],
        [{ env: freshEnv({ HF_HUB_OFFLINE: '1' }) }, 'HF_HUB_OFFLINE is set'],
      ] as const) {
        await assert.rejects(resolveWeights({ ...opts, fetch: noNetwork }), (e: Error) =>
          e.message.includes(why) && e.message.includes('--weights FILE') && e.message.includes('SDTORCH_WEIGHTS=/path/to/model.safetensors'));
      }
    });

    it('downloads the default into the cache once, then uses the cached file', async () => {
      const env = freshEnv({ HF_TOKEN: 'hf_test123' });
      const progress: [number, number][] = [];
      const file = await resolveWeights({ env, hubUrl: hub.url, onProgress: (d, t) => progress.push([d, t]) });
      assert.equal(file, cachedPath({ env }));
      assert.ok(fs.readFileSync(file).equals(hub.body));
      assert.deepEqual(leftovers(env), [DEFAULT_FILE]);
      assert.ok(progress.length >= 1);
      assert.deepEqual(progress.at(-1), [hub.body.length, hub.body.length]);
      assert.ok(progress.every(([d, t], i) => t === hub.body.length && (i === 0 || d > progress[i - 1]![0])));
      assert.ok(hub.requests.length >= 2 && hub.requests.every((h) => h.authorization === 'Bearer hf_test123'));
      const count = hub.requests.length;
      assert.equal(await resolveWeights({ env, hubUrl: hub.url }), file);
      assert.equal(hub.requests.length, count);
    });
  });

  describe('downloadWeights failures leave nothing at the final path', () => {
    const fails = async (mode: Mode, pattern: RegExp) => {
      hub.mode = mode;
      const env = freshEnv({ HF_ENDPOINT: hub.url });
      await assert.rejects(resolveWeights({ env }), (e: Error) => {
        assert.match(e.message, /^Could not download v1-5-pruned-emaonly\.safetensors from http:\/\/127\.0\.0\.1:\d+\/stable-diffusion-v1-5\/stable-diffusion-v1-5: /);
        assert.match(e.message, pattern);
        assert.ok(e.message.includes('--weights FILE') && e.message.includes('SDTORCH_WEIGHTS=/path/to/model.safetensors'), e.message);
        return true;
      });
      assert.ok(!fs.existsSync(cachedPath({ env })));
      assert.deepEqual(leftovers(env), []);
    };

    it('the server answers 500', () => fails('error500', /500/));
    it('the connection drops in the middle of the file', () => fails('close', /terminated|stopped after|socket|aborted/i));
    it('the data does not match the sha256 in the ETag', () => fails('badsha', /sha256/));
    it('401: points at HF_TOKEN', () => fails('unauthorized', /HF_TOKEN=hf_/));
    it('the file is not in the repository', () => fails('missing', /does not exist/));

    it('the hub cannot be reached', async () => {
      const env = freshEnv();
      const closed = http.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      await assert.rejects(downloadWeights({ env, hubUrl: `http://127.0.0.1:${port}` }), /Could not download[\s\S]*ECONNREFUSED[\s\S]*--weights FILE/);
      assert.deepEqual(leftovers(env), []);
    });

    it('an aborted download', async () => {
      const env = freshEnv();
      const controller = new AbortController();
      const p = downloadWeights({ env, hubUrl: hub.url, signal: controller.signal, onProgress: () => controller.abort() });
      await assert.rejects(p, /Could not download[\s\S]*abort/i);
      assert.ok(!fs.existsSync(cachedPath({ env })));
      assert.deepEqual(leftovers(env), []);
    });
  });
});
