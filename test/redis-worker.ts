// A `sdtorch worker` for the Redis tests, with short lock times so that a killed worker's job is
// taken over in seconds: node -r ts-node/register/transpile-only test/redis-worker.ts URL WEIGHTS NAME
import { startWorker } from '../lib/server/worker';

const [url, weights, name] = process.argv.slice(2);
startWorker({ redis: url!, weights: weights!, name: name!, device: 'cpu', lockDuration: 2000, stalledInterval: 1000 }).then(
  (w) => {
    process.stdout.write('ready\n');
    process.on('SIGTERM', () => void w.close().then(() => process.exit(0)));
  },
  (e: Error) => {
    console.error(e.message);
    process.exit(1);
  },
);
