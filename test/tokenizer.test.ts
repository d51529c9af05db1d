import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLIPTokenizer } from '../lib/text/clip-tokenizer';

const FIXTURES = path.join(__dirname, 'fixtures');
const BOS = 49406;
const EOS = 49407;

interface CorpusEntry {
  text: string;
  ids: number[]; // reference, padded/truncated to 77
  tokens: number[]; // reference, no BOS/EOS/padding, untruncated
}

// Reads one int64 tensor from a safetensors file: u64 LE header length, JSON header, raw data.
function readInt64Tensor(file: string, name: string): { shape: number[]; data: number[] } {
  const buf = fs.readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLen)) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const info = header[name];
  assert.ok(info, `${name} missing from ${file}`);
  assert.equal(info.dtype, 'I64');
  const begin = 8 + headerLen + info.data_offsets[0];
  const end = 8 + headerLen + info.data_offsets[1];
  const data: number[] = [];
  for (let off = begin; off < end; off += 8) data.push(Number(buf.readBigInt64LE(off)));
  return { shape: info.shape, data };
}

function rows(data: number[], width: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < data.length; i += width) out.push(data.slice(i, i + width));
  return out;
}

describe('CLIPTokenizer', () => {
  let tok: CLIPTokenizer;
  let corpus: CorpusEntry[];

  before(() => {
    tok = CLIPTokenizer.load();
    corpus = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-corpus.json'), 'utf8')) as CorpusEntry[];
  });

  it('has the CLIP vocabulary and special ids', () => {
    assert.equal(tok.vocabSize, 49408);
    assert.equal(tok.bosId, BOS);
    assert.equal(tok.eosId, EOS);
    assert.equal(tok.padId, EOS);
  });

  it('loads from an explicit directory and fails clearly on a wrong one', () => {
    const other = CLIPTokenizer.load(path.join(__dirname, '..', 'vocab'));
    assert.deepEqual(other.encodeIds(['a photo of a cat']), tok.encodeIds(['a photo of a cat']));
    assert.throws(() => CLIPTokenizer.load(FIXTURES), /bpe_simple_vocab_16e6\.txt\.gz|ENOENT/);
  });

  it('reproduces tokenizer.ids of reference-1234.safetensors', () => {
    const prompts = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'prompts.json'), 'utf8')) as string[];
    const ref = readInt64Tensor(path.join(FIXTURES, 'reference-1234.safetensors'), 'tokenizer.ids');
    assert.deepEqual(ref.shape, [prompts.length, 77]);
    assert.deepEqual(tok.encodeIds(prompts), rows(ref.data, 77));
  });

  it('matches the reference on every corpus entry (padded, truncated rows)', () => {
    assert.ok(corpus.length >= 150, `corpus has only ${corpus.length} entries`);
    const got = tok.encodeIds(corpus.map((e) => e.text));
    const wrong = corpus
      .map((e, i) => ({ text: e.text, expected: e.ids, got: got[i] ?? [] }))
      .filter((r) => r.got.join() !== r.expected.join());
    assert.deepEqual(wrong, []);
  });

  it('matches the reference on every corpus entry (tokenize, untruncated)', () => {
    const wrong = corpus
      .map((e) => ({ text: e.text, expected: e.tokens, got: tok.tokenize(e.text) }))
      .filter((r) => r.got.join() !== r.expected.join());
    assert.deepEqual(wrong, []);
  });

  it('encodes a known prompt to known ids', () => {
    assert.deepEqual(tok.tokenize('a photo of an astronaut riding a horse on mars'), [
      320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496,
    ]);
  });

  it('encodes the empty prompt as BOS then EOS padding', () => {
    assert.deepEqual(tok.tokenize(''), []);
    assert.deepEqual(tok.encodeIds(['']), [[BOS, ...new Array<number>(76).fill(EOS)]]);
    assert.deepEqual(tok.encodeIds([' \t\n ']), tok.encodeIds(['']));
  });

  it('truncates long prompts to 75 tokens and keeps EOS at index 76', () => {
    const text = 'word '.repeat(100);
    const ids = tok.tokenize(text);
    assert.equal(ids.length, 100);
    const row = tok.encodeIds([text])[0] ?? [];
    assert.equal(row.length, 77);
    assert.equal(row[0], BOS);
    assert.equal(row[76], EOS);
    assert.deepEqual(row.slice(1, 76), ids.slice(0, 75));
    // 75 tokens fit exactly; 76 lose the last one
    assert.deepEqual(tok.encodeIds([Array(75).fill('a').join(' ')])[0], [BOS, ...Array<number>(75).fill(320), EOS]);
    assert.deepEqual(tok.encodeIds([Array(76).fill('a').join(' ')])[0], [BOS, ...Array<number>(75).fill(320), EOS]);
  });

  it('honours other lengths and rejects impossible ones', () => {
    assert.deepEqual(tok.encodeIds(['a photo of a cat'], 4), [[BOS, 320, 1125, EOS]]);
    assert.deepEqual(tok.encodeIds(['cat'], 5)[0], [BOS, 2368, EOS, EOS, EOS]);
    assert.deepEqual(tok.encodeIds([], 77), []);
    assert.throws(() => tok.encodeIds(['cat'], 1), RangeError);
    assert.throws(() => tok.encodeIds(['cat'], 7.5), RangeError);
  });

  it('keeps batch order and gives the same ids on repeated (cached) calls', () => {
    const texts = ['cat', 'dog', '', 'cat'];
    const first = tok.encodeIds(texts);
    assert.equal(first.length, 4);
    assert.deepEqual(first[0], first[3]);
    assert.notDeepEqual(first[0], first[1]);
    assert.deepEqual(tok.encodeIds(texts), first);
  });

  it('treats special tokens typed literally as the reference does', () => {
    // exact spelling: the special id itself; any other case: ordinary text
    assert.deepEqual(tok.tokenize('<|endoftext|>'), [EOS]);
    assert.deepEqual(tok.tokenize('a<|startoftext|>b'), [320, BOS, 321]);
    assert.notDeepEqual(tok.tokenize('<|ENDOFTEXT|>'), [EOS]);
  });
});
