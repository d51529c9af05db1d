// The typed Tensor facade over the native handle. Every method returns a new Tensor; nothing is
// in place. Memory is freed by dispose() or by the garbage collector.
import type { DType, NativeTensor } from './native/binding';
import { native } from './native/load';
import { checkSeed } from './util/seed';

export type { DType };
export type TypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Int16Array | Int8Array;
export type Operand = Tensor | number;

const arrayDtype = (data: TypedArray): DType => {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int8Array) return 'int8';
  throw new TypeError('a Uint16Array holds raw float16/bfloat16 bits: pass the dtype explicitly');
};

export class Tensor {
  /** @internal */
  readonly handle: NativeTensor;

  /** @internal */
  constructor(handle: NativeTensor) {
    this.handle = handle;
  }

  /** A tensor copied from `data` with `shape`; dtype defaults to the array's element type. */
  static from(data: TypedArray | number[], shape: number[], dtype?: DType): Tensor {
    const arr = Array.isArray(data) ? Float32Array.from(data) : data;
    return new Tensor(native().NativeTensor.fromBuffer(arr, shape, dtype ?? arrayDtype(arr)));
  }

  static cat(tensors: Tensor[], dim = 0): Tensor {
    return new Tensor(native().NativeTensor.cat(tensors.map((t) => t.handle), dim));
  }

  get shape(): number[] {
    return this.handle.shape;
  }
  get dtype(): DType {
    return this.handle.dtype;
  }
  get device(): string {
    return this.handle.device;
  }
  get disposed(): boolean {
    return this.handle.disposed;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The values as a typed array (float16/bfloat16 widen to Float32Array, int64 gives BigInt64Array). */
  toArray(): Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int16Array | Int8Array {
    const { buffer, dtype } = this.handle.toBuffer();
    switch (dtype) {
      case 'float32': return new Float32Array(buffer);
      case 'float64': return new Float64Array(buffer);
      case 'int64': return new BigInt64Array(buffer);
      case 'int32': return new Int32Array(buffer);
      case 'int16': return new Int16Array(buffer);
      case 'int8': return new Int8Array(buffer);
      default: return new Uint8Array(buffer);
    }
  }

  to(device?: string, dtype?: DType): Tensor {
    return new Tensor(this.handle.to(device, dtype));
  }

  add(o: Operand): Tensor {
    return this.binary('add', o);
  }
  sub(o: Operand): Tensor {
    return this.binary('sub', o);
  }
  mul(o: Operand): Tensor {
    return this.binary('mul', o);
  }
  div(o: Operand): Tensor {
    return this.binary('div', o);
  }
  neg(): Tensor {
    return new Tensor(this.handle.unary('neg'));
  }
  sqrt(): Tensor {
    return new Tensor(this.handle.unary('sqrt'));
  }
  exp(): Tensor {
    return new Tensor(this.handle.unary('exp'));
  }
  clone(): Tensor {
    return new Tensor(this.handle.unary('clone'));
  }
  clamp(min?: number, max?: number): Tensor {
    return new Tensor(this.handle.clamp(min, max));
  }
  chunk(n: number, dim = 0): Tensor[] {
    return this.handle.chunk(n, dim).map((h) => new Tensor(h));
  }
  /** Rows [start, end) along `dim`. */
  slice(dim: number, start: number, end: number): Tensor {
    return new Tensor(this.handle.slice(dim, start, end));
  }
  reshape(shape: number[]): Tensor {
    return new Tensor(this.handle.reshape(shape));
  }
  permute(dims: number[]): Tensor {
    return new Tensor(this.handle.permute(dims));
  }
  /** True when no element is NaN or infinite. */
  allFinite(): boolean {
    return this.handle.unary('allFinite');
  }
  /** Euclidean norm of all elements, in float64. */
  norm(): number {
    return this.handle.unary('norm');
  }
  sum(): number {
    return this.handle.unary('sum');
  }

  /** Frees the memory now; safe to call twice. */
  dispose(): void {
    this.handle.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  private binary(op: 'add' | 'sub' | 'mul' | 'div', o: Operand): Tensor {
    return new Tensor(this.handle.binary(op, typeof o === 'number' ? o : o.handle));
  }
}

/** A seeded CPU random generator: same seed, same numbers as torch.Generator().manual_seed(seed). */
export class Generator {
  private readonly g;
  readonly seed: number | bigint;
  /** seed: an integer in [0, 2^64): a number up to 2^53 - 1, else a BigInt (TypeError otherwise). */
  constructor(seed: number | bigint) {
    this.seed = checkSeed(seed);
    this.g = new (native().NativeGenerator)(this.seed);
  }
  /** Standard normal float32 CPU tensor, drawn as torch.randn(shape, generator=g). */
  randn(shape: number[]): Tensor {
    return new Tensor(this.g.randn(shape));
  }
}

export function randn(shape: number[], generator: Generator): Tensor {
  return generator.randn(shape);
}
