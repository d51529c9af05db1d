// Seeds as people write them. A seed is an integer in [0, 2^64) (torch.Generator's range): a JS
// number up to Number.MAX_SAFE_INTEGER, a BigInt, or (for generate() and the CLI) a decimal string.
// generate() also takes -1, A1111's "random seed". Other negative seeds are refused rather than
// wrapped around: a seed that means something else than it reads is worse than an error.

const MAX = 2n ** 64n;

const unsafe = (seed: number) =>
  new TypeError(
    `seed ${seed} is above Number.MAX_SAFE_INTEGER (2^53 - 1), so JavaScript may already have rounded it: ` +
      'pass it as a BigInt (e.g. 12345678901234567890n) or, to generate() and the CLI, as a decimal string',
  );

/** Checks a Generator seed: an integer number in [0, 2^53) or a BigInt in [0, 2^64). Throws a TypeError. */
export function checkSeed(seed: unknown): number | bigint {
  if (typeof seed === 'number') {
    if (Number.isInteger(seed) && seed > Number.MAX_SAFE_INTEGER) throw unsafe(seed);
    if (Number.isInteger(seed) && seed >= 0) return seed;
  } else if (typeof seed === 'bigint' && seed >= 0n && seed < MAX) return seed;
  throw new TypeError(`seed must be an integer from 0 to 2^64 - 1 (a number, or a BigInt above 2^53), got ${describe(seed)}`);
}

/**
 * generate()'s seed: undefined or -1 (also -1n, '-1') draws a random 32-bit seed, as A1111 does;
 * a decimal string is read exactly; the result is a number when it fits one, else a BigInt.
 */
export function resolveSeed(seed: unknown): number | bigint {
  if (seed === undefined || seed === -1 || seed === -1n || seed === '-1') return Math.floor(Math.random() * 2 ** 32);
  if (typeof seed === 'string') {
    if (!/^\s*\d+\s*$/.test(seed)) throw new TypeError(`seed must be a whole number (or -1 for a random one), got '${seed}'`);
    seed = BigInt(seed.trim());
  }
  const s = checkSeed(seed);
  return typeof s === 'bigint' && s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'bigint') return `${v}n`;
  return typeof v === 'number' ? String(v) : typeof v;
}
