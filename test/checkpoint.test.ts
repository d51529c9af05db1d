import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sd from '../lib';
import { fixture, python, tmpDir } from './helpers';
import { ensureWeights } from './weights';

type Expected = Record<string, { dtype: string; shape: number[]; hex: string }>;

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** The values of a float (or int32) tensor as numbers. */
function floats(t: sd.Tensor): number[] {
  return Array.from(t.toArray() as Float32Array);
}

/** Hex of the bytes toArray() gives (float16/bfloat16 widened to float32). */
function arrayHex(t: sd.Tensor): string {
  return bytesOf(t.toArray()).toString('hex');
}

/** Asserts that a rejected promise's Error matches every pattern. */
async function rejects(p: Promise<unknown>, ...patterns: (RegExp | string)[]): Promise<Error> {
  let err: unknown;
  await p.then(
    () => assert.fail(`expected a rejection matching ${patterns.join(', ')}`),
    (e: unknown) => (err = e),
  );
  assert.ok(err instanceof Error, `rejected with a non-Error: ${String(err)}`);
  for (const pat of patterns) {
    if (typeof pat === 'string') assert.ok(err.message.includes(pat), `message lacks '${pat}': ${err.message}`);
    else assert.match(err.message, pat);
  }
  return err;
}

function checkAgainst(loaded: Record<string, sd.Tensor>, expected: Expected, what: string): void {
  assert.deepEqual(Object.keys(loaded).sort(), Object.keys(expected).sort(), `${what}: tensor names`);
  for (const [name, e] of Object.entries(expected)) {
    const t = loaded[name];
    assert.equal(t.dtype, e.dtype, `${what} '${name}': dtype`);
    assert.deepEqual(t.shape, e.shape, `${what} '${name}': shape`);
    assert.equal(arrayHex(t), e.hex, `${what} '${name}': values`);
  }
}

/** Reads a safetensors header: [header length, parsed JSON]. */
function header(file: string): [number, Record<string, unknown>] {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return [n, JSON.parse(buf.toString('utf8', 8, 8 + n)) as Record<string, unknown>];
}

/** A safetensors file from a header object and a data section. */
function rawSafetensors(file: string, head: object, data: Buffer): void {
  const json = Buffer.from(JSON.stringify(head));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}

// Python's view of a safetensors file: metadata and, per tensor, dtype, shape and raw bytes.
const PY_READ_SAFETENSORS = `
import json, sys, torch
from safetensors import safe_open
out = {}
with safe_open(sys.argv[1], "pt") as f:
    meta = f.metadata()
    for k in f.keys():
        t = f.get_tensor(k)
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        out[k] = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "hex": raw.hex()}
print(json.dumps({"metadata": meta, "tensors": out}))
`;

// What each tensor of a weights file is, as Python reads it, hashed as Tensor.toArray() lays it out:
// float16/bfloat16/float32 as float32 bytes, anything else its own bytes. Writes JSON atomically.
const PY_HASH_WEIGHTS = `
import hashlib, json, os, sys, torch
path, out = sys.argv[1], sys.argv[2]
def digest(t):
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32):
        t = t.float()
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()
def entry(t):
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "sha256": digest(t)}
res = {}
if path.endswith(".safetensors"):
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        for k in f.keys():
            res[k] = entry(f.get_tensor(k))
else:
    sd = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    sd = sd.get("state_dict", sd)
    for k, t in sd.items():
        res[k] = entry(t)
tmp = out + ".tmp-%d" % os.getpid()
with open(tmp, "w") as f:
    json.dump({"file": os.path.basename(path), "size": os.path.getsize(path), "tensors": res}, f)
os.replace(tmp, out)
`;

describe('saveTensors / loadTensors', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tmpDir()));
  afterEach(() => cleanup());

  // Every dtype, with the raw bytes the file must hold and the values toArray() must give back.
  function record() {
    const f16Bits = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00]);
    const bf16Bits = new Uint16Array([0x3f80, 0x4049, 0xc2f7, 0xff80]);
    const cases: Record<string, { t: sd.Tensor; raw: ArrayBufferView; back: number[] | bigint[] | null; dtype: string }> = {
      f32: { t: sd.Tensor.from(new Float32Array([1.5, -0, NaN, 3.4e38, 1e-45, -7]), [2, 3]), raw: new Float32Array([1.5, -0, NaN, 3.4e38, 1e-45, -7]), back: null, dtype: 'F32' },
      f16: { t: sd.Tensor.from(f16Bits, [3, 2], 'float16'), raw: f16Bits, back: [1, -2, 65504, 2 ** -24, -0, Infinity], dtype: 'F16' },
      bf16: { t: sd.Tensor.from(bf16Bits, [4], 'bfloat16'), raw: bf16Bits, back: [1, 3.140625, -123.5, -Infinity], dtype: 'BF16' },
      f64: { t: sd.Tensor.from(new Float64Array([0.1, -5e-324, 1e308]), [3]), raw: new Float64Array([0.1, -5e-324, 1e308]), back: null, dtype: 'F64' },
      i64: { t: sd.Tensor.from(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]), [1, 2]), raw: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]), back: null, dtype: 'I64' },
      i32: { t: sd.Tensor.from(new Int32Array([-(2 ** 31), 5, 2 ** 31 - 1]), [3]), raw: new Int32Array([-(2 ** 31), 5, 2 ** 31 - 1]), back: null, dtype: 'I32' },
      i16: { t: sd.Tensor.from(new Int16Array([-32768, 32767]), [2]), raw: new Int16Array([-32768, 32767]), back: null, dtype: 'I16' },
      i8: { t: sd.Tensor.from(new Int8Array([-128, 1, 127]), [3]), raw: new Int8Array([-128, 1, 127]), back: null, dtype: 'I8' },
      u8: { t: sd.Tensor.from(new Uint8Array([0, 200, 255]), [3, 1]), raw: new Uint8Array([0, 200, 255]), back: null, dtype: 'U8' },
      bool: { t: sd.Tensor.from(new Uint8Array([1, 0, 0, 1]), [2, 2], 'bool'), raw: new Uint8Array([1, 0, 0, 1]), back: null, dtype: 'BOOL' },
      scalar: { t: sd.Tensor.from([2.5], []), raw: new Float32Array([2.5]), back: null, dtype: 'F32' },
      scalar_i64: { t: sd.Tensor.from(new BigInt64Array([-9n]), []), raw: new BigInt64Array([-9n]), back: null, dtype: 'I64' },
      empty: { t: sd.Tensor.from([], [0]), raw: new Float32Array(0), back: null, dtype: 'F32' },
      empty_2d: { t: sd.Tensor.from(new Int32Array(0), [3, 0]), raw: new Int32Array(0), back: null, dtype: 'I32' },
      'odd/key.ü "quoted" \\ tab\t': { t: sd.Tensor.from([1, 2], [2]), raw: new Float32Array([1, 2]), back: null, dtype: 'F32' },
    };
    return cases;
  }
  const tensorsOf = (c: ReturnType<typeof record>) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v.t]));

  it('round trips every dtype, incl. 0-d and empty tensors', async () => {
    const c = record();
    const file = path.join(dir, 'all.safetensors');
    await sd.saveTensors(file, tensorsOf(c));
    const loaded = await sd.loadTensors(file);
    assert.deepEqual(Object.keys(loaded).sort(), Object.keys(c).sort());
    for (const [k, v] of Object.entries(c)) {
      const t = loaded[k];
      assert.equal(t.dtype, v.t.dtype, k);
      assert.deepEqual(t.shape, v.t.shape, k);
      if (v.back) assert.deepEqual(Array.from(t.toArray() as Float32Array), v.back, k);
      else assert.equal(arrayHex(t), bytesOf(v.raw).toString('hex'), k);
    }
    // the header says what it holds, and data starts 8-byte aligned
    const [n, head] = header(file);
    assert.equal(n % 8, 0);
    for (const [k, v] of Object.entries(c)) assert.equal((head[k] as { dtype: string }).dtype, v.dtype, k);
    assert.equal(head.__metadata__, undefined);
  });

  it("Python's safetensors reads our file back bit for bit, with the metadata", async () => {
    const c = record();
    const file = path.join(dir, 'py.safetensors');
    const metadata = { format: 'pt', note: 'ünïcode 中 "quoted" \\ new\nline', empty: '' };
    await sd.saveTensors(file, tensorsOf(c), { metadata });
    const py = JSON.parse(python(PY_READ_SAFETENSORS, [file])) as { metadata: Record<string, string>; tensors: Expected };
    assert.deepEqual(py.metadata, metadata);
    assert.deepEqual(Object.keys(py.tensors).sort(), Object.keys(c).sort());
    for (const [k, v] of Object.entries(c)) {
      const p = py.tensors[k];
      assert.equal(p.dtype, v.t.dtype, k);
      assert.deepEqual(p.shape, v.t.shape, k);
      assert.equal(p.hex, bytesOf(v.raw).toString('hex'), `${k}: bytes`);
    }
  });

  it('loadMetadata reads what Python wrote, what we wrote, and nothing from a .ckpt', async () => {
    assert.deepEqual(await sd.loadMetadata(fixture('io', 'dtypes.safetensors')), { note: 'unicode ü中 "quoted" \\ and a\nnewline', format: 'pt' });
    const file = path.join(dir, 'meta.safetensors');
    const metadata = { a: '1', 'ключ': 'значение' };
    await sd.saveTensors(file, { x: sd.Tensor.from([1], [1]) }, { metadata });
    assert.deepEqual(await sd.loadMetadata(file), metadata);
    assert.deepEqual(await sd.loadMetadata(fixture('io', 'flat.ckpt')), {});
  });

  it('saves views by value and re-saves loaded (memory-mapped) tensors', async () => {
    const m = sd.Tensor.from(Array.from({ length: 12 }, (_, i) => i), [3, 4]);
    const first = path.join(dir, 'views.safetensors');
    await sd.saveTensors(first, { cols: m.slice(1, 1, 3), rows: m.slice(0, 1, 3), t: m.permute([1, 0]) });
    const loaded = await sd.loadTensors(first);
    assert.deepEqual(floats(loaded.cols), [1, 2, 5, 6, 9, 10]);
    assert.deepEqual(floats(loaded.rows), [4, 5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual(floats(loaded.t), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    const py = await sd.loadTensors(fixture('io', 'flat.ckpt'));
    const second = path.join(dir, 'resaved.safetensors');
    await sd.saveTensors(second, { ...loaded, transposed: py.transposed, half: py.half });
    const again = await sd.loadTensors(second);
    for (const k of ['cols', 'rows', 't', 'transposed', 'half']) {
      const src = k in loaded ? loaded[k] : py[k];
      assert.equal(again[k].dtype, src.dtype, k);
      assert.deepEqual(again[k].shape, src.shape, k);
      assert.equal(arrayHex(again[k]), arrayHex(src), k);
    }
  });

  it('refuses to overwrite (old file intact), replaces with { overwrite: true }, leaves no temp file', async () => {
    const file = path.join(dir, 'x.safetensors');
    await sd.saveTensors(file, { a: sd.Tensor.from([1, 2, 3], [3]) });
    const before = fs.readFileSync(file);
    await rejects(sd.saveTensors(file, { b: sd.Tensor.from([4], [1]) }), file, /already exists/, /overwrite: true/);
    assert.deepEqual(fs.readFileSync(file), before, 'the old file is intact');
    assert.deepEqual(fs.readdirSync(dir), ['x.safetensors']);

    await sd.saveTensors(file, { b: sd.Tensor.from([4], [1]) }, { overwrite: true });
    const loaded = await sd.loadTensors(file);
    assert.deepEqual(Object.keys(loaded), ['b']);
    assert.deepEqual(floats(loaded.b), [4]);
    assert.deepEqual(fs.readdirSync(dir), ['x.safetensors'], 'no temp file is left behind');
  });

  it('concurrent saves to one path: with overwrite all succeed and one wins whole; without, exactly one succeeds', async () => {
    const n = 400_000;
    const filled = (v: number) => sd.Tensor.from(new Float32Array(n).fill(v), [n]);
    const file = path.join(dir, 'race.safetensors');
    for (let round = 0; round < 3; round++) {
      const overwrite = round > 0;
      const results = await Promise.allSettled([1, 2, 3, 4].map((v) => sd.saveTensors(file, { [`t${v}`]: filled(v) }, { overwrite })));
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (overwrite) assert.deepEqual(failed.map((r) => (r.reason as Error).message), []);
      else {
        assert.equal(failed.length, 3, 'all but one are refused');
        for (const r of failed) assert.match((r.reason as Error).message, /already exists/);
      }
      const loaded = await sd.loadTensors(file);
      const [name] = Object.keys(loaded);
      assert.equal(Object.keys(loaded).length, 1);
      assert.equal(loaded[name].sum(), Number(name.slice(1)) * n, 'the file holds one save, whole');
      assert.deepEqual(fs.readdirSync(dir), ['race.safetensors'], 'no temp file is left behind');
    }
  });

  it("refuses a tensor named '__metadata__'", async () => {
    const file = path.join(dir, 'm.safetensors');
    await rejects(sd.saveTensors(file, { __metadata__: sd.Tensor.from([1], [1]) }, { metadata: { a: 'b' } }), /__metadata__/);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('a failed save says why and leaves nothing behind', async () => {
    const file = path.join(dir, 'missing-dir', 'x.safetensors');
    await rejects(sd.saveTensors(file, { a: sd.Tensor.from([1], [1]) }), 'missing-dir');
    assert.deepEqual(fs.readdirSync(dir), []);
    const gone = sd.Tensor.from([1], [1]);
    gone.dispose();
    const target = path.join(dir, 'y.safetensors');
    await rejects(sd.saveTensors(target, { a: sd.Tensor.from([1], [1]), gone }), /disposed/);
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});

describe('loadTensors: files written by Python', () => {
  const expected = JSON.parse(fs.readFileSync(fixture('io', 'expected.json'), 'utf8')) as Record<
    string,
    { metadata?: Record<string, string>; tensors: Expected }
  >;

  it('safetensors with every dtype (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL), 0-d, empty, special values, an odd key', async () => {
    checkAgainst(await sd.loadTensors(fixture('io', 'dtypes.safetensors')), expected['dtypes.safetensors'].tensors, 'dtypes');
  });

  it('a torch.save .ckpt nesting {"state_dict": OrderedDict} among other entries: exactly the state_dict', async () => {
    checkAgainst(await sd.loadTensors(fixture('io', 'nested.ckpt')), expected['nested.ckpt'].tensors, 'nested');
  });

  it('a torch.save .ckpt with views at storage offsets, non-contiguous and stride-0 tensors, shared storages, fp16, int32 0-d, a Parameter', async () => {
    const loaded = await sd.loadTensors(fixture('io', 'flat.ckpt'));
    checkAgainst(loaded, expected['flat.ckpt'].tensors, 'flat');
    assert.deepEqual(floats(loaded.view_offset), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    assert.deepEqual(floats(loaded.strided), [6, 8, 10, 12, 14, 16, 18, 20, 22]);
    assert.deepEqual(floats(loaded.expanded), [0, 1, 2, 0, 1, 2]);
    assert.deepEqual(floats(loaded.int32_scalar), [-17]);
  });

  it('a .ckpt nesting the state_dict twice ({"state_dict": {"state_dict": ...}}): exactly the inner dict', async () => {
    const twice = await sd.loadTensors(fixture('io', 'nested-twice.ckpt'));
    checkAgainst(twice, expected['nested-twice.ckpt'].tensors, 'nested-twice');
    // the same tensors as the same state_dict nested once
    checkAgainst(twice, expected['nested.ckpt'].tensors, 'nested-twice vs nested');
  });

  it('a .ckpt whose "state_dict" holds itself (a pickle cycle): the unwrapping stops', async () => {
    const file = fixture('io', 'nested-cycle.ckpt');
    const loaded = await sd.loadTensors(file);
    checkAgainst(loaded, expected['nested-cycle.ckpt'].tensors, 'nested-cycle');
    assert.deepEqual(floats(loaded.w), [0, 1, 2]);
    // the cycle does not keep the file mapped once its tensors are gone
    loaded.w.dispose();
    if (fs.existsSync('/proc/self/maps')) assert.ok(!fs.readFileSync('/proc/self/maps', 'utf8').includes(file), `${file} is still mapped`);
  });

  for (const name of ['lightning', 'lightning-p4']) {
    it(`a Lightning .ckpt (${name}): ModelCheckpoint class and instance as "callbacks" keys, numpy global_step, array, dtype, sets: exactly the state_dict`, async () => {
      checkAgainst(await sd.loadTensors(fixture('io', `${name}.ckpt`)), expected[`${name}.ckpt`].tensors, name);
    });
  }

  it('loaded tensors work in math and outlive the other tensors of their file', async () => {
    const loaded = await sd.loadTensors(fixture('io', 'flat.ckpt'));
    const sum = loaded.base.slice(0, 0, 12).add(loaded.view_offset);
    for (const [k, t] of Object.entries(loaded)) if (k !== 'transposed') t.dispose();
    assert.deepEqual(floats(sum), [5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27]);
    assert.equal(loaded.transposed.mul(2).sum(), 552);
  });
});

describe('loadTensors: refuses code in .ckpt pickles', () => {
  const cases: Array<[string, string]> = [
    ['os-system', 'os.system'],
    ['exec', 'builtins.exec'],
    ['subprocess', 'subprocess.check_call'],
  ];
  for (const [name, global] of cases) {
    it(`a pickle calling ${global} is refused, naming it, and nothing runs`, async () => {
      const marker = `/tmp/sdtorch-pwned-${name}`;
      fs.rmSync(marker, { force: true });
      const file = fixture('io', `pwned-${name}.ckpt`);
      await rejects(sd.loadTensors(file), /refused/, global, file);
      assert.equal(fs.existsSync(marker), false, `${marker} was created: the payload ran`);
    });
  }

  it('INST (which would call os.system) is refused and nothing runs', async () => {
    const marker = '/tmp/sdtorch-pwned-inst';
    fs.rmSync(marker, { force: true });
    await rejects(sd.loadTensors(fixture('io', 'pwned-inst.ckpt')), /refused/, /opcode/);
    assert.equal(fs.existsSync(marker), false);
  });

  it('an os.system call hidden in the state of an allowed (inert) ModelCheckpoint is refused and nothing runs', async () => {
    const marker = '/tmp/sdtorch-pwned-in-state';
    fs.rmSync(marker, { force: true });
    const file = fixture('io', 'refused-in-state.ckpt');
    await rejects(sd.loadTensors(file), /refused/, 'posix.system', file);
    assert.equal(fs.existsSync(marker), false);
  });

  it('a refused global as a plain dict value or as a "callbacks" key is refused', async () => {
    await rejects(sd.loadTensors(fixture('io', 'refused-dict-value.ckpt')), /refused/, "'builtins.getattr'");
    await rejects(sd.loadTensors(fixture('io', 'refused-as-key.ckpt')), /refused/, "'subprocess.Popen'");
  });

  const refusedGlobals = fs
    .readdirSync(fixture('io'))
    .map((f) => /^refused-global-(.+)\.ckpt$/.exec(f)?.[1])
    .filter((g): g is string => g !== undefined);
  it('the fixture script wrote the refused globals (posix.system, builtins.eval, torch.load, look-alikes ...)', () => {
    assert.ok(refusedGlobals.length >= 14, refusedGlobals.join());
    for (const g of ['posix.system', 'nt.system', 'builtins.eval', 'builtins.__import__', 'torch.load', 'pytorch_lightning.callbacksX.y']) assert.ok(refusedGlobals.includes(g), g);
  });
  for (const global of refusedGlobals) {
    it(`${global} stays refused`, async () => {
      await rejects(sd.loadTensors(fixture('io', `refused-global-${global}.ckpt`)), /^'.*': refused: the checkpoint references/, `'${global}'`);
    });
  }

  for (const op of ['obj', 'newobj']) {
    it(`${op.toUpperCase()} on an allowed class is refused for the opcode itself`, async () => {
      await rejects(sd.loadTensors(fixture('io', `opcode-${op}.ckpt`)), /refused/, /opcode/);
    });
  }
});

describe("loadTensors: safetensors files that break the format's rules are refused, as Python's safetensors refuses them", () => {
  const expected = JSON.parse(fs.readFileSync(fixture('io', 'expected.json'), 'utf8')) as {
    'safetensors-rules': Record<string, { rule: string; python: string }>;
  } & Record<string, { metadata?: Record<string, string>; tensors: Expected }>;
  const rules = expected['safetensors-rules'];
  // What our message must name, per fixture (test/fixtures/io/st-*.safetensors).
  const says: Record<string, RegExp> = {
    'st-overlap.safetensors': /tensor 'b' \(bytes 4\.\.12\) overlaps tensor 'a' \(bytes 0\.\.8\)/,
    'st-overlap-same.safetensors': /tensor 'b' \(bytes 0\.\.8\) overlaps tensor 'a' \(bytes 0\.\.8\)/,
    'st-gap.safetensors': /no tensor covers bytes 8\.\.12 of its data, before tensor 'b'/,
    'st-gap-start.safetensors': /no tensor covers bytes 0\.\.4 of its data, before tensor 'a'/,
    'st-trailing.safetensors': /8 bytes after the last tensor's data belong to no tensor/,
    'st-metadata-number.safetensors': /__metadata__ value 'step' is not a string/,
    'st-metadata-object.safetensors': /__metadata__ value 'x' is not a string/,
    'st-metadata-not-object.safetensors': /__metadata__ is not a JSON object/,
    'st-header-too-large.safetensors': /header claims 100000001 bytes, more than the 100000000/,
    'st-header-leading-space.safetensors': /header starts with whitespace where the safetensors format requires '\{'/,
    'st-header-nul-padding.safetensors': /malformed JSON header \(trailing characters/,
    'st-duplicate-name.safetensors': /names 'a' twice/,
    'st-bad-utf8.safetensors': /header is not valid UTF-8/,
    'st-float-offset.safetensors': /tensor 'a' has bad data_offsets/,
  };

  it('every rule has a fixture and an expected message', () => {
    assert.deepEqual(Object.keys(rules).sort(), Object.keys(says).sort());
  });

  for (const [name, pattern] of Object.entries(says)) {
    it(`${name}: refused, saying what is wrong (loadTensors and loadMetadata)`, async () => {
      const file = fixture('io', name);
      await rejects(sd.loadTensors(file), file, /is damaged/, pattern);
      await rejects(sd.loadMetadata(file), file, pattern);
      // Python's verdict when the fixture was written. The format requires the header to start
      // with '{'; Python's reader tolerates leading whitespace, we follow the format.
      if (name === 'st-header-leading-space.safetensors') assert.equal(rules[name].python, 'accepted');
      else assert.match(rules[name].python, /^refused: /, `${name}: ${rules[name].rule}`);
    });
  }

  it('a valid file in odd shape (header order unlike offset order, an empty tensor, an extra field, space padding) loads as Python reads it', async () => {
    const file = fixture('io', 'st-valid-unordered.safetensors');
    checkAgainst(await sd.loadTensors(file), expected['st-valid-unordered.safetensors'].tensors, 'st-valid-unordered');
    assert.deepEqual(await sd.loadMetadata(file), expected['st-valid-unordered.safetensors'].metadata);
  });

  it('files we write keep the rules: no tensors, empty tensors, metadata only; Python reads them too', async () => {
    const { dir, cleanup } = tmpDir();
    try {
      const none = path.join(dir, 'none.safetensors');
      await sd.saveTensors(none, {}, { metadata: { a: 'b' } });
      assert.deepEqual(await sd.loadTensors(none), {});
      assert.deepEqual(await sd.loadMetadata(none), { a: 'b' });
      const empties = path.join(dir, 'empties.safetensors');
      await sd.saveTensors(empties, { e0: sd.Tensor.from([], [0]), x: sd.Tensor.from([1, 2, 3], [3]), e1: sd.Tensor.from(new Int32Array(0), [2, 0]) });
      const back = await sd.loadTensors(empties);
      assert.deepEqual(floats(back.x), [1, 2, 3]);
      assert.deepEqual(back.e1.shape, [2, 0]);
      for (const file of [none, empties]) {
        const py = JSON.parse(python(PY_READ_SAFETENSORS, [file])) as { tensors: Expected };
        assert.deepEqual(Object.keys(py.tensors).sort(), Object.keys(await sd.loadTensors(file)).sort(), file);
      }
    } finally {
      cleanup();
    }
  });
});

describe('loadTensors: damaged and unsupported files', () => {
  let dir: string;
  let cleanup: () => void;
  before(() => ({ dir, cleanup } = tmpDir()));
  after(() => cleanup());

  const write = (name: string, data: Uint8Array | string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, data);
    return file;
  };
  const st = () => fs.readFileSync(fixture('io', 'dtypes.safetensors'));
  const ckpt = () => fs.readFileSync(fixture('io', 'nested.ckpt'));

  it('a .safetensors cut in its data', async () => {
    const b = st();
    const file = write('cut-data.safetensors', b.subarray(0, b.length - 10));
    await rejects(sd.loadTensors(file), file, /is damaged/, /truncated/);
  });

  it('a .safetensors cut in its header', async () => {
    const file = write('cut-header.safetensors', st().subarray(0, 40));
    await rejects(sd.loadTensors(file), file, /is damaged/, /truncated/);
  });

  it('a .safetensors with a corrupt header', async () => {
    const b = st();
    b.write('#', 9); // '{"..." -> '{#...'
    const file = write('corrupt.safetensors', b);
    await rejects(sd.loadTensors(file), file, /is damaged/, /JSON/);
  });

  it('a .safetensors whose header length is absurd', async () => {
    const b = st();
    b.writeBigUInt64LE(1n << 62n, 0);
    b[8] = '{'.charCodeAt(0);
    const file = write('huge-header.safetensors', b);
    await rejects(sd.loadTensors(file), file, /is damaged/);
  });

  it('a .safetensors entry whose byte range does not fit its shape', async () => {
    const file = path.join(dir, 'bad-range.safetensors');
    rawSafetensors(file, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, Buffer.alloc(8));
    await rejects(sd.loadTensors(file), file, /is damaged/, "'a'");
  });

  it('a .safetensors with a dtype we do not read names it', async () => {
    const file = path.join(dir, 'f8.safetensors');
    rawSafetensors(file, { a: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, Buffer.alloc(8));
    await rejects(sd.loadTensors(file), file, 'F8_E4M3', /not supported/);
  });

  it('a truncated .ckpt', async () => {
    const b = ckpt();
    for (const keep of [Math.floor(b.length * 0.6), b.length - 3]) {
      const file = write(`cut-${keep}.ckpt`, b.subarray(0, keep));
      await rejects(sd.loadTensors(file), file, /is damaged/);
    }
  });

  it('a .ckpt whose pickle ends early', async () => {
    const b = ckpt();
    // find data.pkl's central directory entry (torch.save's local headers defer sizes to a descriptor)
    let at = b.indexOf('PK\x01\x02', 0, 'latin1');
    while (at >= 0 && b.toString('latin1', at + 46, at + 46 + b.readUInt16LE(at + 28)) !== 'nested/data.pkl') at = b.indexOf('PK\x01\x02', at + 4, 'latin1');
    assert.ok(at >= 0, 'data.pkl is in the central directory');
    const size = b.readUInt32LE(at + 20);
    const local = b.readUInt32LE(at + 42);
    const start = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    assert.equal(b[start + size - 1], '.'.charCodeAt(0), 'the pickle ends with STOP');
    b[start + size - 1] = 'N'.charCodeAt(0); // STOP -> None: the pickle now runs off its end
    const file = write('no-stop.ckpt', b);
    await rejects(sd.loadTensors(file), file, /is damaged/);
  });

  for (const name of ['beyond', 'offset-beyond', 'view-overflow', 'view-overflow-2d', 'storage-overflow']) {
    it(`a .ckpt tensor record pointing outside its storage (${name})`, async () => {
      const file = fixture('io', `bad-${name}.ckpt`);
      await rejects(sd.loadTensors(file), file, /is damaged/);
    });
  }

  it('zips written by hand, plain and ZIP64, load', async () => {
    for (const name of ['zip-plain', 'zip64']) {
      const loaded = await sd.loadTensors(fixture('io', `${name}.ckpt`));
      assert.deepEqual(Object.keys(loaded), ['w'], name);
      assert.deepEqual(floats(loaded.w), [0, 1, 2, 3], name);
    }
  });

  for (const name of ['local', 'cd', 'record']) {
    it(`a ZIP64 ${name} offset that wraps around 2^64 (no out-of-bounds read)`, async () => {
      const file = fixture('io', `bad-zip64-${name}.ckpt`);
      await rejects(sd.loadTensors(file), file, /is damaged/, /zip/);
    });
  }

  it('a .safetensors shape whose element count overflows 64 bits', async () => {
    const file = path.join(dir, 'overflow.safetensors');
    rawSafetensors(file, { a: { dtype: 'F32', shape: [2 ** 32, 2 ** 32], data_offsets: [0, 0] } }, Buffer.alloc(8));
    await rejects(sd.loadTensors(file), file, /is damaged/, "'a'");
  });

  it('a .safetensors with a fractional or negative number in its header', async () => {
    for (const [i, entry] of [
      { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] },
      { dtype: 'F32', shape: [1], data_offsets: [-4, 0] },
      { dtype: 'F32', shape: [1], data_offsets: ['0', 4] },
    ].entries()) {
      const file = path.join(dir, `bad-number-${i}.safetensors`);
      rawSafetensors(file, { a: entry }, Buffer.alloc(8));
      await rejects(sd.loadTensors(file), file, /is damaged/, "'a'");
    }
  });

  it('random junk and an empty file: says which formats are supported', async () => {
    let x = 0x12345678;
    const junk = Buffer.alloc(4096, 0).map(() => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x & 0xff;
    });
    for (const [name, data] of [['junk.bin', junk], ['text.safetensors', 'this is not a model, just some text\n'], ['empty.ckpt', '']] as const) {
      const file = write(name, data);
      await rejects(sd.loadTensors(file), file, /not a supported checkpoint/, /\.safetensors/, /\.ckpt/);
    }
  });

  it('a legacy (pre-zip) torch.save file and a zip that is not a checkpoint say what they are', async () => {
    await rejects(sd.loadTensors(fixture('io', 'legacy.pt')), /legacy/, /safetensors/);
    await rejects(sd.loadTensors(fixture('io', 'not-a-checkpoint.zip')), /not a PyTorch checkpoint/);
  });

  it('a missing file and a directory: the error has the path', async () => {
    const missing = path.join(dir, 'nope', 'model.safetensors');
    const e = await rejects(sd.loadTensors(missing), missing, /No such file/);
    assert.match(e.stack ?? '', /checkpoint\.test\.ts/, 'the rejection carries the caller stack');
    await rejects(sd.loadTensors(dir), dir, /not a regular file/);
  });
});

describe('the full-size random SD 1.5 checkpoint: every tensor equals what Python reads', function () {
  let files: string[] = [];
  before(function () {
    this.timeout(60 * 60_000); // first run: makes 10.7 GB of weights, then hashes them in Python
    const w = ensureWeights();
    files = [w.safetensors, w.fp16, w.ckpt];
    for (const file of files) {
      const cache = `${file}.sha256.json`;
      if (!fs.existsSync(cache) || fs.statSync(cache).mtimeMs < fs.statSync(file).mtimeMs) python(PY_HASH_WEIGHTS, [file, cache]);
    }
  });

  for (const [i, label] of ['.safetensors (fp32)', '.fp16.safetensors', '.ckpt (torch.save, nested state_dict)'].entries()) {
    it(label, async function () {
      this.timeout(10 * 60_000);
      const file = files[i];
      const ref = JSON.parse(fs.readFileSync(`${file}.sha256.json`, 'utf8')) as {
        tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
      };
      const loaded = await sd.loadTensors(file);
      const names = Object.keys(ref.tensors);
      assert.ok(names.length > 1100, `${names.length} tensors in the reference`);
      assert.deepEqual(Object.keys(loaded).sort(), names.sort());
      const bad: string[] = [];
      for (const name of names) {
        const t = loaded[name];
        const r = ref.tensors[name];
        const got = createHash('sha256').update(t.toArray()).digest('hex');
        if (t.dtype !== r.dtype || t.shape.join() !== r.shape.join() || got !== r.sha256)
          bad.push(`${name}: ${t.dtype}[${t.shape}] vs ${r.dtype}[${r.shape}]${got === r.sha256 ? '' : ', values differ'}`);
        t.dispose();
      }
      assert.deepEqual(bad, [], `${bad.length} tensors differ`);
    });
  }
});
