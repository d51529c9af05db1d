// sdtorch's cache folder: downloaded libtorch, weights, remembered model hashes.
import os from 'node:os';
import path from 'node:path';

/** sdtorch's cache (downloaded libtorch and weights): SDTORCH_CACHE, else ~/.cache/sdtorch. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SDTORCH_CACHE) return path.resolve(env.SDTORCH_CACHE);
  return path.join(env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'sdtorch');
}
