// Loaded before every test file (.mocharc.json): the tests, and the processes they start, use a
// throw-away cache (model hashes, downloads) instead of the user's ~/.cache/sdtorch.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { releaseWeights } from './weights';

if (!process.env.SDTORCH_CACHE) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-cache-'));
  process.env.SDTORCH_CACHE = dir;
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
}

/** Root hooks (mocha): with SDTORCH_TRANSIENT_WEIGHTS=1 the random checkpoints the run made go at its end. */
export const mochaHooks = { afterAll: releaseWeights };
