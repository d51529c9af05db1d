import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as sd from '../lib';
import { fixture } from './helpers';

const f = Math.fround;

/** The values of a float tensor as plain numbers (Object.is equality in deepEqual: NaN and -0 count). */
function values(t: sd.Tensor): number[] {
  const a = t.toArray();
  assert.ok(a instanceof Float32Array || a instanceof Float64Array, `expected float values, got ${a.constructor.name}`);
  return Array.from(a);
}

function ints(t: sd.Tensor): number[] {
  return Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
}

describe('Tensor', () => {
  describe('from / toArray', () => {
    it('float32 from a Float32Array: shape, dtype, device, values', () => {
      const t = sd.Tensor.from(new Float32Array([1, 2, 3, 4.5, -5, 6]), [2, 3]);
      assert.deepEqual(t.shape, [2, 3]);
      assert.equal(t.dtype, 'float32');
      assert.equal(t.device, 'cpu');
      assert.equal(t.numel, 6);
      const a = t.toArray();
      assert.ok(a instanceof Float32Array);
      assert.deepEqual(Array.from(a), [1, 2, 3, 4.5, -5, 6]);
    });

    it('number[] gives float32, or the dtype asked for', () => {
      const t = sd.Tensor.from([0.1, -2, 3], [3]);
      assert.equal(t.dtype, 'float32');
      assert.deepEqual(values(t), [f(0.1), -2, 3]);
      const i = sd.Tensor.from([1, -2, 3], [3], 'int64');
      assert.equal(i.dtype, 'int64');
      assert.deepEqual(Array.from(i.toArray() as BigInt64Array), [1n, -2n, 3n]);
    });

    it('float16 from float32 values widens back exactly (incl. -0, subnormal, max, inf, NaN) and rounds others', () => {
      const exact = [0, -0, 1, -2.5, 0.5, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN];
      const t = sd.Tensor.from(new Float32Array(exact), [exact.length], 'float16');
      assert.equal(t.dtype, 'float16');
      const a = t.toArray();
      assert.ok(a instanceof Float32Array, 'float16 widens to Float32Array');
      assert.deepEqual(Array.from(a), exact);
      // 0.1 rounds to the nearest half: 0x2e66 = 1638/16384
      assert.deepEqual(values(sd.Tensor.from([0.1, 70000], [2], 'float16')), [0.0999755859375, Infinity]);
    });

    it('float16 from raw bits in a Uint16Array', () => {
      const bits = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x3555]);
      const t = sd.Tensor.from(bits, [2, 3], 'float16');
      assert.equal(t.dtype, 'float16');
      assert.deepEqual(values(t), [1, -2, 65504, 2 ** -24, -0, 0.333251953125]);
    });

    it('bfloat16 from float32 values and from raw bits', () => {
      const exact = [1, -2, 0.5, 3.140625, 2 ** 100, -0, 2 ** -133];
      const t = sd.Tensor.from(new Float32Array(exact), [exact.length], 'bfloat16');
      assert.equal(t.dtype, 'bfloat16');
      assert.ok(t.toArray() instanceof Float32Array);
      assert.deepEqual(values(t), exact);
      assert.deepEqual(values(sd.Tensor.from([3.14159], [1], 'bfloat16')), [3.140625]);
      const raw = sd.Tensor.from(new Uint16Array([0x3f80, 0x4049, 0xc2f7]), [3], 'bfloat16');
      assert.deepEqual(values(raw), [1, 3.140625, -123.5]);
    });

    it('a Uint16Array without a dtype is refused (raw bits are ambiguous)', () => {
      assert.throws(() => sd.Tensor.from(new Uint16Array([1]), [1]), (e: Error) => e instanceof TypeError && /float16/.test(e.message));
    });

    it('int64 from a BigInt64Array keeps the full range', () => {
      const v = [-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 123456789012345678n, 5n];
      const t = sd.Tensor.from(new BigInt64Array(v), [3, 2]);
      assert.equal(t.dtype, 'int64');
      assert.deepEqual(t.shape, [3, 2]);
      const a = t.toArray();
      assert.ok(a instanceof BigInt64Array);
      assert.deepEqual(Array.from(a), v);
    });

    it('int32, int16, int8, uint8, float64 and bool', () => {
      const i32 = sd.Tensor.from(new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, 7]), [2, 2]);
      assert.equal(i32.dtype, 'int32');
      assert.ok(i32.toArray() instanceof Int32Array);
      assert.deepEqual(ints(i32), [-(2 ** 31), 2 ** 31 - 1, 0, 7]);

      const u8 = sd.Tensor.from(new Uint8Array([0, 255, 7]), [3]);
      assert.equal(u8.dtype, 'uint8');
      assert.ok(u8.toArray() instanceof Uint8Array);
      assert.deepEqual(ints(u8), [0, 255, 7]);

      const i16 = sd.Tensor.from(new Int16Array([-32768, 32767]), [2]);
      assert.equal(i16.dtype, 'int16');
      assert.deepEqual(ints(i16), [-32768, 32767]);
      const i8 = sd.Tensor.from(new Int8Array([-128, 127]), [2]);
      assert.equal(i8.dtype, 'int8');
      assert.deepEqual(ints(i8), [-128, 127]);

      const f64 = sd.Tensor.from(new Float64Array([0.1, 1e300, -5e-324]), [3]);
      assert.equal(f64.dtype, 'float64');
      assert.ok(f64.toArray() instanceof Float64Array);
      assert.deepEqual(values(f64), [0.1, 1e300, -5e-324]);

      const b = sd.Tensor.from(new Uint8Array([1, 0, 2, 255]), [4], 'bool');
      assert.equal(b.dtype, 'bool');
      assert.deepEqual(ints(b), [1, 0, 1, 1], 'nonzero bytes are true, as torch.tensor(u8).bool()');
    });

    it('0-d and empty tensors', () => {
      const s = sd.Tensor.from([5], []);
      assert.deepEqual(s.shape, []);
      assert.equal(s.numel, 1);
      assert.deepEqual(values(s), [5]);
      const e = sd.Tensor.from([], [0, 3]);
      assert.deepEqual(e.shape, [0, 3]);
      assert.equal(e.numel, 0);
      assert.equal(e.toArray().length, 0);
      const ei = sd.Tensor.from(new BigInt64Array(0), [2, 0], 'int64');
      assert.deepEqual(ei.shape, [2, 0]);
      assert.equal(ei.toArray().length, 0);
    });

    it('reads a typed array view at its byte offset, and copies: later writes on either side do not leak', () => {
      const backing = new Float32Array([9, 1, 2, 3, 9]);
      const t = sd.Tensor.from(backing.subarray(1, 4), [3]);
      assert.deepEqual(values(t), [1, 2, 3]);
      backing[2] = 100;
      assert.deepEqual(values(t), [1, 2, 3]);
      const out = t.toArray() as Float32Array;
      out[0] = -1;
      assert.deepEqual(values(t), [1, 2, 3]);
    });
  });

  describe('to(device, dtype)', () => {
    it('converts dtype like torch (float -> int truncates toward zero)', () => {
      const t = sd.Tensor.from([1.7, -1.7, 2.5], [3]);
      const i = t.to('cpu', 'int32');
      assert.equal(i.dtype, 'int32');
      assert.equal(i.device, 'cpu');
      assert.deepEqual(ints(i), [1, -1, 2]);
      const h = t.to(undefined, 'float16');
      assert.equal(h.dtype, 'float16');
      assert.deepEqual(values(h), [1.7001953125, -1.7001953125, 2.5]);
      const back = h.to(undefined, 'float32');
      assert.equal(back.dtype, 'float32');
      assert.deepEqual(values(back), [1.7001953125, -1.7001953125, 2.5]);
      assert.equal(t.to('cpu').dtype, 'float32');
      assert.equal(t.dtype, 'float32', 'the source is unchanged');
    });

    it('cuda: moves there and back, or says CUDA is not available', () => {
      const t = sd.Tensor.from([1, 2, 3], [3]);
      if (sd.systemInfo().cudaAvailable) {
        const g = t.to('cuda', 'float16');
        assert.match(g.device, /^cuda/);
        assert.equal(g.dtype, 'float16');
        assert.deepEqual(values(g.mul(2)), [2, 4, 6]);
        assert.equal(g.to('cpu').device, 'cpu');
      } else {
        assert.throws(() => t.to('cuda'), /CUDA is not available/);
      }
    });

    it('rejects unknown devices and dtypes', () => {
      const t = sd.Tensor.from([1], [1]);
      assert.throws(() => t.to('tpu'), /unknown device 'tpu'/);
      assert.throws(() => t.to(undefined, 'float8' as sd.DType), /unknown dtype 'float8'/);
    });
  });

  describe('arithmetic', () => {
    const a = () => sd.Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = () => sd.Tensor.from([6, 5, 4, 3, 2, 1], [2, 3]);

    it('add/sub/mul/div with tensors', () => {
      assert.deepEqual(values(a().add(b())), [7, 7, 7, 7, 7, 7]);
      assert.deepEqual(values(a().sub(b())), [-5, -3, -1, 1, 3, 5]);
      assert.deepEqual(values(a().mul(b())), [6, 10, 12, 12, 10, 6]);
      assert.deepEqual(values(a().div(b())), [f(1 / 6), f(2 / 5), f(3 / 4), f(4 / 3), f(5 / 2), 6]);
      assert.deepEqual(a().add(b()).shape, [2, 3]);
    });

    it('add/sub/mul/div with scalars', () => {
      assert.deepEqual(values(a().add(1.5)), [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
      assert.deepEqual(values(a().sub(1)), [0, 1, 2, 3, 4, 5]);
      assert.deepEqual(values(a().mul(-2)), [-2, -4, -6, -8, -10, -12]);
      assert.deepEqual(values(a().div(4)), [0.25, 0.5, 0.75, 1, 1.25, 1.5]);
      assert.deepEqual(values(sd.Tensor.from([1, -1, 0], [3]).div(0)), [Infinity, -Infinity, NaN]);
    });

    it('broadcasts like torch', () => {
      const row = sd.Tensor.from([10, 20, 30], [3]);
      assert.deepEqual(values(a().add(row)), [11, 22, 33, 14, 25, 36]);
      const col = sd.Tensor.from([100, 200], [2, 1]);
      assert.deepEqual(values(a().mul(col)), [100, 200, 300, 800, 1000, 1200]);
      const x = sd.Tensor.from([1, 2, 3, 4, 5, 6], [2, 1, 3]);
      const y = sd.Tensor.from([1, 10, 100, 1000], [1, 4, 1]);
      const z = x.mul(y);
      assert.deepEqual(z.shape, [2, 4, 3]);
      const expected: number[] = [];
      for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) for (let k = 0; k < 3; k++) expected.push((i * 3 + k + 1) * 10 ** j);
      assert.deepEqual(values(z), expected);
      const s = sd.Tensor.from([2], []);
      assert.deepEqual(values(row.sub(s)), [8, 18, 28]);
    });

    it('promotes dtypes like torch', () => {
      const i = sd.Tensor.from(new Int32Array([1, 2]), [2]);
      const r = i.add(0.5);
      assert.equal(r.dtype, 'float32');
      assert.deepEqual(values(r), [1.5, 2.5]);
      const d = sd.Tensor.from(new BigInt64Array([7n, -7n]), [2]).div(2);
      assert.equal(d.dtype, 'float32', 'int / int is true division');
      assert.deepEqual(values(d), [3.5, -3.5]);
      const h = sd.Tensor.from([1, 2], [2], 'float16').mul(3);
      assert.equal(h.dtype, 'float16');
      assert.deepEqual(values(h), [3, 6]);
    });

    it('neg, sqrt, clamp', () => {
      assert.deepEqual(values(sd.Tensor.from([1, -2, 0], [3]).neg()), [-1, 2, -0]);
      assert.deepEqual(values(sd.Tensor.from([0, 1, 4, 9, 2, -1], [6]).sqrt()), [0, 1, 2, 3, f(Math.SQRT2), NaN]);
      const c = sd.Tensor.from([-2, -0.5, 0, 0.5, 2], [5]);
      assert.deepEqual(values(c.clamp(-1, 1)), [-1, -0.5, 0, 0.5, 1]);
      assert.deepEqual(values(c.clamp(0)), [0, 0, 0, 0.5, 2]);
      assert.deepEqual(values(c.clamp(undefined, 0)), [-2, -0.5, 0, 0, 0]);
    });

    it('sum, norm, allFinite', () => {
      assert.equal(sd.Tensor.from([1, 2, 3.5], [3]).sum(), 6.5);
      assert.equal(sd.Tensor.from([3, 4], [2]).norm(), 5);
      assert.equal(sd.Tensor.from([1, 2], [2]).allFinite(), true);
      assert.equal(sd.Tensor.from([1, NaN], [2]).allFinite(), false);
      assert.equal(sd.Tensor.from([1, -Infinity], [2]).allFinite(), false);
    });
  });

  describe('shape ops', () => {
    const arange = (n: number, shape: number[]) => sd.Tensor.from(Array.from({ length: n }, (_, i) => i), shape);

    it('Tensor.cat along a dim, incl. a negative one', () => {
      const x = arange(6, [2, 3]);
      const y = sd.Tensor.from([6, 7, 8], [1, 3]);
      const c0 = sd.Tensor.cat([x, y]);
      assert.deepEqual(c0.shape, [3, 3]);
      assert.deepEqual(values(c0), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
      const z = sd.Tensor.from([10, 11, 12, 13], [2, 2]);
      const c1 = sd.Tensor.cat([x, z], -1);
      assert.deepEqual(c1.shape, [2, 5]);
      assert.deepEqual(values(c1), [0, 1, 2, 10, 11, 3, 4, 5, 12, 13]);
      assert.throws(() => sd.Tensor.cat([x, z], 0), /Sizes of tensors must match/);
    });

    it('chunk', () => {
      const parts = arange(6, [6]).chunk(3);
      assert.equal(parts.length, 3);
      assert.deepEqual(parts.map(values), [[0, 1], [2, 3], [4, 5]]);
      const cols = arange(10, [2, 5]).chunk(2, 1);
      assert.deepEqual(cols.map((p) => p.shape), [[2, 3], [2, 2]]);
      assert.deepEqual(values(cols[1]), [3, 4, 8, 9]);
    });

    it('slice [start, end) along a dim; views survive their parent being disposed', () => {
      const m = arange(12, [3, 4]);
      const s = m.slice(1, 1, 3);
      assert.deepEqual(s.shape, [3, 2]);
      assert.deepEqual(values(s), [1, 2, 5, 6, 9, 10]);
      assert.deepEqual(values(m.slice(0, 1, 100)), [4, 5, 6, 7, 8, 9, 10, 11]);
      assert.deepEqual(values(m.slice(0, -1, 3)), [8, 9, 10, 11]);
      m.dispose();
      assert.deepEqual(values(s), [1, 2, 5, 6, 9, 10]);
    });

    it('reshape keeps C order; -1 infers', () => {
      const r = arange(6, [2, 3]).reshape([3, 2]);
      assert.deepEqual(r.shape, [3, 2]);
      assert.deepEqual(values(r), [0, 1, 2, 3, 4, 5]);
      assert.deepEqual(r.reshape([-1]).shape, [6]);
      assert.throws(() => r.reshape([4, 2]), /shape '\[4, 2\]' is invalid for input of size 6/);
    });

    it('permute moves data like torch.permute', () => {
      const p = arange(24, [2, 3, 4]).permute([2, 0, 1]);
      assert.deepEqual(p.shape, [4, 2, 3]);
      const expected: number[] = [];
      for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expected.push(i * 12 + j * 4 + k);
      assert.deepEqual(values(p), expected);
      assert.throws(() => arange(6, [2, 3]).permute([0, 0]), /duplicate dims/);
    });

    it('clone is independent of its source', () => {
      const t = sd.Tensor.from([1, 2, 3], [3]);
      const c = t.clone();
      assert.deepEqual(c.shape, [3]);
      t.dispose();
      assert.equal(c.disposed, false);
      assert.deepEqual(values(c), [1, 2, 3]);
      const c2 = c.clone();
      c.dispose();
      assert.deepEqual(values(c2), [1, 2, 3]);
    });
  });

  describe('errors', () => {
    it('shape and array length mismatch', () => {
      assert.throws(() => sd.Tensor.from([1, 2, 3], [2, 2]), /shape holds 4 elements but the array has 3/);
      assert.throws(() => sd.Tensor.from([1, 2], [-1, -2]), /shape must be an array of non-negative integers/);
      assert.throws(() => sd.Tensor.from([1, 2], [2.5]), /non-negative integers/);
    });

    it('incompatible shapes give a JS Error with libtorch\'s message, and the process goes on', () => {
      const x = sd.Tensor.from([1, 2, 3], [3]);
      const y = sd.Tensor.from([1, 2, 3, 4], [4]);
      assert.throws(
        () => x.add(y),
        (e: unknown) => e instanceof Error && /size of tensor a \(3\) must match the size of tensor b \(4\)/.test(e.message),
      );
      assert.throws(() => x.mul(y), Error);
      assert.deepEqual(values(x.add(x)), [2, 4, 6]);
    });

    it('a disposed tensor cannot be used again; dispose() twice is safe', () => {
      const t = sd.Tensor.from([1, 2], [2]);
      const other = sd.Tensor.from([1, 1], [2]);
      assert.equal(t.disposed, false);
      t.dispose();
      assert.equal(t.disposed, true);
      assert.doesNotThrow(() => t.dispose());
      assert.doesNotThrow(() => t[Symbol.dispose]());
      const disposed = /disposed/;
      assert.throws(() => t.toArray(), disposed);
      assert.throws(() => t.shape, disposed);
      assert.throws(() => t.dtype, disposed);
      assert.throws(() => t.add(1), disposed);
      assert.throws(() => other.add(t), disposed);
      assert.throws(() => sd.Tensor.cat([other, t]), disposed);
      assert.throws(() => t.clone(), disposed);
      assert.deepEqual(values(other), [1, 1]);
    });

    it('`using` disposes at the end of the block', () => {
      let escaped: sd.Tensor;
      {
        using t = sd.Tensor.from([1], [1]);
        escaped = t;
        assert.equal(t.disposed, false);
      }
      assert.equal(escaped.disposed, true);
    });
  });
});

interface RandnDraw {
  shape: number[];
  values: number[];
  indices?: number[];
  sum?: number;
  sha256?: string;
}
interface RandnCase {
  seed: string;
  draws: RandnDraw[];
}

describe('randn / Generator', () => {
  const ref = JSON.parse(fs.readFileSync(fixture('randn-reference.json'), 'utf8')) as { cases: RandnCase[] };
  const seedOf = (s: string): number | bigint => (BigInt(s) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : BigInt(s));

  function check(t: sd.Tensor, d: RandnDraw, what: string) {
    assert.deepEqual(t.shape, d.shape, what);
    assert.equal(t.dtype, 'float32');
    const a = t.toArray() as Float32Array;
    if (!d.indices) {
      assert.deepEqual(Array.from(a), d.values, what);
      return;
    }
    assert.deepEqual(d.indices.map((i) => a[i]), d.values, what);
    let sum = 0;
    for (const v of a) sum += v;
    assert.ok(Math.abs(sum - d.sum!) < 1e-9 * a.length, `${what}: sum ${sum} vs ${d.sum}`);
    assert.equal(createHash('sha256').update(a).digest('hex'), d.sha256, `${what}: sha256 of all values`);
  }

  for (const c of ref.cases) {
    it(`seed ${c.seed}: ${c.draws.map((d) => `[${d.shape}]`).join(' then ')} equals torch`, () => {
      const g = new sd.Generator(seedOf(c.seed));
      c.draws.forEach((d, i) => check(sd.randn(d.shape, g), d, `seed ${c.seed}, draw ${i} [${d.shape}]`));
    });
  }

  it('a number seed and the same bigint seed draw the same; Generator.randn equals randn', () => {
    const c = ref.cases.find((x) => x.seed === '42')!;
    const g1 = new sd.Generator(42);
    const g2 = new sd.Generator(42n);
    assert.equal(g2.seed, 42n);
    for (const d of c.draws) {
      check(g1.randn(d.shape), d, 'number seed');
      check(sd.randn(d.shape, g2), d, 'bigint seed');
    }
  });

  it('generators are independent; different seeds differ', () => {
    const a = new sd.Generator(5);
    const b = new sd.Generator(5);
    const a1 = values(a.randn([20]));
    const a2 = values(a.randn([20]));
    assert.deepEqual(values(b.randn([20])), a1);
    assert.notDeepEqual(a2, a1);
    assert.notDeepEqual(values(new sd.Generator(6).randn([20])), a1);
  });

  it('invalid seeds are a TypeError', () => {
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 64, -1n, 2n ** 64n, '42' as unknown as number, undefined as unknown as number]) {
      assert.throws(() => new sd.Generator(bad), TypeError, `seed ${String(bad)}`);
    }
    assert.doesNotThrow(() => new sd.Generator(2n ** 64n - 1n));
    assert.doesNotThrow(() => new sd.Generator(0));
  });

  it('a bad shape is an Error, and the generator still works', () => {
    const g = new sd.Generator(0);
    assert.throws(() => sd.randn([-1], g), /non-negative integers/);
    check(sd.randn([1], g), ref.cases.find((x) => x.seed === '0')!.draws[0], 'after a failed draw');
  });
});
