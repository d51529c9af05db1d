// sdtorch serve --redis with `sdtorch worker` processes (BullMQ): jobs, progress with previews and
// interrupts through Redis, and a worker SIGKILLed mid-job whose job another worker finishes:
// every request answered once. Starts its own redis-server on a free loopback port.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { startServer, type Server } from '../lib/server/serve';
import { REPO_ROOT, tmpDir } from './helpers';
import { tinyCheckpoint } from './tiny';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function waitForLine(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (pattern.test(out)) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`${what} exited (${code}): ${out}`)));
  });
}

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json().catch(() => ({}))) as Record<string, unknown> };
}

describe('sdtorch serve --redis with workers (BullMQ)', function () {
  let redis: ChildProcess;
  let redisUrl: string;
  let server: Server;
  let weights: string;
  const workers = new Map<string, ChildProcess>();
  let dirs: { dir: string; cleanup: () => void };

  const startWorkerProcess = async (name: string) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join('test', 'redis-worker.ts'), redisUrl, weights, name], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    workers.set(name, child);
    await waitForLine(child, /ready/, `worker ${name}`);
    return child;
  };

  before(async function () {
    dirs = tmpDir('sdtorch-redis-');
    const port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dirs.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForLine(redis, /Ready to accept connections/, 'redis-server');
    redisUrl = `redis://127.0.0.1:${port}`;
    weights = await tinyCheckpoint();
    server = await startServer({ redis: redisUrl, weights, port: 0, maxQueue: 50 });
    await Promise.all([startWorkerProcess('w1'), startWorkerProcess('w2')]);
  });

  after(async function () {
    await server?.close(1000);
    for (const w of workers.values()) w.kill('SIGKILL');
    redis?.kill('SIGTERM');
    dirs?.cleanup();
  });

  it('runs txt2img on the workers; A1111 answers as in-process', async function () {
    const r = await post(`${server.url}/sdapi/v1/txt2img`, { prompt: 'via redis', seed: 5, width: 32, height: 32, steps: 3, batch_size: 2 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((r.json['images'] as string[]).length, 2);
    const info = JSON.parse(r.json['info'] as string);
    assert.equal(info.seed, 5);
    assert.equal(info.sd_model_name, 'tiny-random');
  });

  it('img2img with a mask on a worker; an input the library refuses at run time is a 422 through Redis too', async function () {
    const sharp = (await import('sharp')).default;
    const solid = (v: number) => sharp({ create: { width: 32, height: 32, channels: 3, background: { r: v, g: v, b: v } } }).png().toBuffer();
    const half = await sharp(Buffer.from(Array.from({ length: 32 * 32 * 3 }, (_, i) => (Math.floor(i / 3) % 32 < 16 ? 255 : 0))), { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer();
    const body = { prompt: 'via redis', init_images: [(await solid(90)).toString('base64')], mask_blur: 0, inpaint_full_res: false, width: 32, height: 32, steps: 3 };
    const ok = await post(`${server.url}/sdapi/v1/img2img`, { ...body, mask: half.toString('base64') });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    const { data } = await sharp(Buffer.from((ok.json['images'] as string[])[0]!, 'base64')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    for (let y = 0; y < 32; y++) for (let x = 16; x < 32; x++) assert.deepEqual([...data.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)], [90, 90, 90], `(${x}, ${y}) outside the mask`);
    const refused = await post(`${server.url}/sdapi/v1/img2img`, { ...body, mask: (await solid(0)).toString('base64') });
    assert.equal(refused.status, 422, JSON.stringify(refused.json));
    assert.match(String(refused.json['detail']), /^generate\(\): the mask has no pixel .* nothing to repaint/);
  });

  it('progress with a preview comes back through Redis; interrupt reaches the worker', async function () {
    const run = post(`${server.url}/sdapi/v1/txt2img`, { prompt: 'long', width: 32, height: 32, steps: 150, n_iter: 4 });
    let preview: string | null = null;
    for (let i = 0; i < 600 && !preview; i++) {
      const p = (await (await fetch(`${server.url}/sdapi/v1/progress`)).json()) as { current_image: string | null; progress: number; state: Record<string, number> };
      if (p.current_image && p.state['sampling_step']! > 0 && p.progress > 0) preview = p.current_image;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(preview, 'no preview through Redis');
    await post(`${server.url}/sdapi/v1/interrupt`, {});
    const r = await run;
    assert.equal(r.status, 200);
    assert.ok((r.json['images'] as string[]).length < 4);
  });

  it('a worker SIGKILLed mid-job: its job goes to the other worker, every request is answered once', async function () {
    this.timeout(600_000);
    const queue = new Queue('sdtorch', { connection: { url: redisUrl } });
    try {
      const before = await queue.getCompletedCount();
      const failedBefore = await queue.getFailedCount(); // the refused inpainting job above
      const n = 6;
      const requests = Array.from({ length: n }, (_, i) => post(`${server.url}/sdapi/v1/txt2img`, { prompt: `job ${i}`, seed: 100 + i, width: 32, height: 32, steps: 60 }));
      // Kill w1 while it holds a job.
      let killedJob: string | undefined;
      for (let i = 0; i < 400 && !killedJob; i++) {
        const active = await queue.getActive();
        const mine = active.find((j) => j.processedBy?.startsWith('w1'));
        if (mine) {
          workers.get('w1')!.kill('SIGKILL');
          killedJob = mine.data.prompt;
        } else await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(killedJob, 'w1 never took a job');
      const results = await Promise.all(requests);
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 200, JSON.stringify(r.json));
        const info = JSON.parse(r.json['info'] as string);
        assert.equal(info.prompt, `job ${i}`);
        assert.equal(info.seed, 100 + i);
      }
      const completed = await queue.getCompleted();
      const ours = completed.filter((j) => /^job \d$/.test(j.data.prompt));
      assert.equal(ours.length, n); // each job completed once
      assert.equal(new Set(ours.map((j) => j.data.prompt)).size, n);
      const taken = ours.find((j) => j.data.prompt === killedJob)!;
      assert.equal(taken.returnvalue.worker, 'w2'); // the killed worker's job, finished by the other
      assert.equal(await queue.getFailedCount(), failedBefore);
      assert.ok((await queue.getCompletedCount()) - before === n);
    } finally {
      await queue.close(); // also when an assertion fails: an open queue keeps mocha from exiting
    }
  });
});
