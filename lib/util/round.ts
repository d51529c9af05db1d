/** Round half to even, as numpy's `round` and Python's `round` do (2.5 -> 2, 3.5 -> 4). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
