// sdtorch serve --redis with `sdtorch worker` processes (BullMQ): jobs, progress with previews and
// interrupts through Redis, and a worker SIGKILLed mid-job whose job another worker finishes:
// every request answered once. Then Redis itself SIGKILLed and restarted on its files: with the
// append-only file (appendfsync always) no accepted job is lost; without it the lost ones are
// answered 503; a worker running through it goes on. Starts its own redis-servers on free
// loopback ports.
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

/** A `sdtorch worker` process (test/redis-worker.ts) and when it says it is ready. */
function spawnWorker(redisUrl: string, weights: string, name: string): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join('test', 'redis-worker.ts'), redisUrl, weights, name], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  return { child, ready: waitForLine(child, /ready/, `worker ${name}`) };
}

/** redis-server on 127.0.0.1:port keeping its files in dir, once it accepts connections (and has read `ready`, a pattern of its log). */
async function startRedis(port: number, dir: string, persistence: string[], ready = /Ready to accept connections/): Promise<ChildProcess> {
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  await waitForLine(redis, ready, 'redis-server');
  return redis;
}

describe('sdtorch serve --redis with workers (BullMQ)', function () {
  let redis: ChildProcess;
  let redisUrl: string;
  let server: Server;
  let weights: string;
  const workers = new Map<string, ChildProcess>();
  let dirs: { dir: string; cleanup: () => void };

  const startWorkerProcess = async (name: string) => {
    const { child, ready } = spawnWorker(redisUrl, weights, name);
    workers.set(name, child);
    await ready;
  };

  before(async function () {
    dirs = tmpDir('sdtorch-redis-');
    const port = await freePort();
    redis = await startRedis(port, dirs.dir, ['--appendonly', 'no']);
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

describe('sdtorch serve --redis across a Redis restart', function () {
  let redis: ChildProcess | undefined;
  let server: Server | undefined;
  let worker: ChildProcess | undefined;
  let queue: Queue | undefined;
  let dirs: { dir: string; cleanup: () => void } | undefined;

  afterEach(async function () {
    await queue?.close();
    await server?.close(1000);
    worker?.kill('SIGKILL');
    redis?.kill('SIGKILL');
    dirs?.cleanup();
    [redis, server, worker, queue, dirs] = [undefined, undefined, undefined, undefined, undefined];
  });

  /**
   * redis-server with `persistence` in a fresh dir, `sdtorch serve --redis` on it, `n` txt2img
   * requests accepted (waiting in Redis, no worker); then Redis is SIGKILLed, one more request
   * comes while it is down, and Redis starts again on the same dir and port (`reloaded`: its log
   * once it is up). With `workerName` a worker runs all along (then n is 0: nothing waits). Returns
   * the requests (the one sent during the outage last), the lines the server printed meanwhile, and
   * a BullMQ queue on the new Redis.
   */
  async function restartWithJobsWaiting(persistence: string[], reloaded: RegExp, n: number, workerName?: string) {
    dirs = tmpDir('sdtorch-redis-restart-');
    const port = await freePort();
    redis = await startRedis(port, dirs.dir, persistence);
    const redisUrl = `redis://127.0.0.1:${port}`;
    const weights = await tinyCheckpoint();
    server = await startServer({ redis: redisUrl, weights, port: 0, maxQueue: 50 });
    let workerErr = '';
    if (workerName) {
      const w = spawnWorker(redisUrl, weights, workerName);
      worker = w.child;
      worker.stderr!.on('data', (d: Buffer) => (workerErr += d.toString()));
      await w.ready;
    }
    const url = server.url;
    const progress = async () => ((await (await fetch(`${url}/sdapi/v1/progress`)).json()) as { state: Record<string, number> }).state;
    // A client that gave up after a minute would fail the test instead of hanging it.
    const request = async (i: number) => {
      const r = await fetch(`${url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: `kept ${i}`, seed: 300 + i, width: 32, height: 32, steps: 3 }), signal: AbortSignal.timeout(60_000) });
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    };

    // Jobs accepted (in Redis, waiting) with no worker to take them.
    const requests = Array.from({ length: n }, (_, i) => request(i));
    for (let i = 0; i < 200 && (await progress())['queue_pending'] !== n; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await progress())['queue_pending'], n, 'the jobs never reached Redis');

    // Redis dies without a chance to write anything more, and a request comes in while it is down.
    // What the server prints meanwhile goes to `printed`.
    const printed: string[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    try {
      const exited = new Promise((r) => redis!.once('exit', r));
      redis.kill('SIGKILL');
      await exited;
      requests.push(request(n));
      await new Promise((r) => setTimeout(r, 3000)); // the server's connections notice and retry, several times
      // Back on the same files and port.
      redis = await startRedis(port, dirs.dir, persistence, reloaded);
      queue = new Queue('sdtorch', { connection: { url: redisUrl } });
      // The request sent during the outage reaches Redis once it is back.
      for (let i = 0; i < 200 && !(await queue.getJobs(['waiting', 'active', 'completed'])).some((j) => j.data.prompt === `kept ${n}`); i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      console.error = consoleError;
    }
    return { requests, printed, queue, redisUrl, weights, workerErr: () => workerErr };
  }

  /** One line for the outage, one for its end, no stack trace per retry of each connection. */
  function assertToldOnce(printed: string[]): void {
    assert.ok(printed.length >= 2 && printed.length <= 4, printed.join('\n---\n'));
    assert.match(printed[0]!, /^sdtorch serve: lost the Redis connection \(.*ECONNREFUSED.*\); retrying, jobs wait$/);
    assert.ok(printed.includes('sdtorch serve: Redis is back'), printed.join('\n'));
    for (const line of printed) assert.doesNotMatch(line, /\n\s+at |Unhandled error/, line);
  }

  it('with the append-only file (appendfsync always): Redis SIGKILLed with jobs waiting and no worker, restarted on its files, every accepted job is answered once', async function () {
    this.timeout(600_000);
    const n = 5;
    // As the README says to run it: each write on disk before Redis answers it.
    const { requests, printed, queue, redisUrl, weights } = await restartWithJobsWaiting(['--appendonly', 'yes', '--appendfsync', 'always'], /DB loaded from append only file[\s\S]*Ready to accept connections/, n);
    assertToldOnce(printed);
    assert.equal(await queue.getWaitingCount(), n + 1, 'jobs lost, or the one sent while Redis was down never came');

    // A worker comes: every job runs once and each client gets its own answer.
    const w = spawnWorker(redisUrl, weights, 'w-after-restart');
    worker = w.child;
    await w.ready;
    const results = await Promise.all(requests);
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const info = JSON.parse(r.json['info'] as string);
      assert.equal(info.prompt, `kept ${i}`);
      assert.equal(info.seed, 300 + i);
    }
    assert.equal(new Set(results.map((r) => (r.json['images'] as string[])[0])).size, n + 1);
    const completed = await queue.getCompleted();
    assert.deepEqual(completed.map((j) => j.data.prompt).sort(), Array.from({ length: n + 1 }, (_, i) => `kept ${i}`).sort());
    for (const j of completed) assert.equal(j.returnvalue.worker, 'w-after-restart');
    assert.deepEqual(await queue.getJobCounts('waiting', 'active', 'delayed', 'failed'), { waiting: 0, active: 0, delayed: 0, failed: 0 });
  });

  it('without it: the jobs Redis lost are answered 503 (JobLost) instead of waited for forever; the one sent during the outage runs', async function () {
    this.timeout(600_000);
    const n = 3;
    const { requests, printed, queue, redisUrl, weights } = await restartWithJobsWaiting(['--appendonly', 'no'], /Ready to accept connections/, n);
    assertToldOnce(printed);
    assert.equal(await queue.getWaitingCount(), 1);
    const w = spawnWorker(redisUrl, weights, 'w-after-loss');
    worker = w.child;
    await w.ready;
    const results = await Promise.all(requests);
    for (const r of results.slice(0, n)) {
      assert.equal(r.status, 503, JSON.stringify(r.json));
      assert.equal(r.json['error'], 'JobLost');
      assert.match(String(r.json['detail']), /the job was lost: Redis restarted without it .*appendonly yes/);
    }
    assert.equal(results[n]!.status, 200, JSON.stringify(results[n]!.json));
    assert.equal(JSON.parse(results[n]!.json['info'] as string).prompt, `kept ${n}`);
  });

  it('a worker running through the restart: it tells the outage once, takes the job sent meanwhile, and interrupts still reach it', async function () {
    this.timeout(600_000);
    const { requests, printed, queue, workerErr } = await restartWithJobsWaiting(['--appendonly', 'yes', '--appendfsync', 'always'], /DB loaded from append only file[\s\S]*Ready to accept connections/, 0, 'w-through');
    assertToldOnce(printed);
    const [r] = await Promise.all(requests);
    assert.equal(r!.status, 200, JSON.stringify(r!.json));
    assert.equal((await queue.getCompleted()).find((j) => j.data.prompt === 'kept 0')?.returnvalue.worker, 'w-through');
    // Progress (events) and interrupt (pub/sub) through the new connections.
    const url = server!.url;
    const run = post(`${url}/sdapi/v1/txt2img`, { prompt: 'long', width: 32, height: 32, steps: 150, n_iter: 3 });
    let step = 0;
    for (let i = 0; i < 600 && step === 0; i++) {
      step = ((await (await fetch(`${url}/sdapi/v1/progress`)).json()) as { state: { sampling_step: number } }).state.sampling_step;
      if (step === 0) await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(step > 0, 'no progress from the worker after the restart');
    await post(`${url}/sdapi/v1/interrupt`, {});
    const long = await run;
    assert.equal(long.status, 200);
    assert.ok((long.json['images'] as string[]).length < 3);
    const lines = workerErr().trim().split('\n').filter(Boolean);
    assert.ok(lines.length >= 2 && lines.length <= 4, workerErr());
    assert.match(lines[0]!, /^sdtorch worker w-through: lost the Redis connection \(.*\); retrying, jobs wait$/);
    assert.ok(lines.includes('sdtorch worker w-through: Redis is back'), workerErr());
  });
});
