// Throughput of sdtorch serve --redis with 1 and 2 workers on the tiny random model:
//   node -r ts-node/register/transpile-only -r ./test/setup.ts scripts/bench-serve.ts [jobs] [size] [steps]
// Starts its own redis-server; prints images/min for each worker count.
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { startServer } from '../lib/server/serve';
import { tinyCheckpoint } from '../test/tiny';

const [jobs = 12, size = 32, steps = 20] = process.argv.slice(2).map(Number);
const port = 6390 + Math.floor(Math.random() * 100);
const url = `redis://127.0.0.1:${port}`;

function ready(child: ChildProcess, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => ((out += d), pattern.test(out) && resolve()));
    child.on('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
}

(async () => {
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await ready(redis, /Ready to accept/);
  const weights = await tinyCheckpoint();
  const server = await startServer({ redis: url, weights, port: 0, maxQueue: 1000 });
  const workers: ChildProcess[] = [];
  console.log(`${os.cpus().length} cores (${os.cpus()[0]?.model}), load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; ${jobs} jobs of 1 image ${size}x${size}, ${steps} Euler steps`);
  for (const count of [1, 2]) {
    while (workers.length < count) {
      const w = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'test/redis-worker.ts', url, weights, `w${workers.length + 1}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await ready(w, /ready/);
      workers.push(w);
    }
    const body = (i: number) => JSON.stringify({ prompt: `bench ${i}`, seed: i, width: size, height: size, steps, sampler_name: 'Euler' });
    const t = performance.now();
    const res = await Promise.all(Array.from({ length: jobs }, (_, i) => fetch(`${server.url}/sdapi/v1/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(i) }).then((r) => r.status)));
    const s = (performance.now() - t) / 1000;
    console.log(`${count} worker(s): ${res.filter((x) => x === 200).length}/${jobs} images in ${s.toFixed(1)} s = ${((jobs / s) * 60).toFixed(1)} images/min`);
  }
  for (const w of workers) w.kill('SIGTERM');
  await server.close(1000);
  redis.kill();
  process.exit(0);
})();
