// CLIP byte-level BPE tokenizer, matching transformers' CLIPTokenizer (the tokenizers-backed one that
// diffusers uses) called with padding="max_length", max_length=77, truncation=True.
// test/fixtures/tokenizer-corpus.json (made by scripts/make_tokenizer_fixture.py) pins that behaviour.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

const VOCAB_FILE = 'bpe_simple_vocab_16e6.txt.gz';
// The vocabulary uses the first 48894 merges of the file (lines 2..48895); the rest are unused.
const NUM_MERGES = 49152 - 256 - 2;
const BOS = '<|startoftext|>';
const EOS = '<|endoftext|>';

// Whitespace as the reference's regex engine (Oniguruma) sees `\s`: Unicode White_Space. JS `\s`
// differs (it includes U+FEFF and lacks U+0085), so the class is spelled out.
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${WS}]+`, 'gu');
// Letters and digits new in Unicode 17. The reference's tables stop at Unicode 16, where these are
// unassigned (neither \p{L} nor \p{N}); Node's ICU may know them, so they are moved back to "other".
// (An ICU older than Unicode 16 would instead miss the letters Unicode 16 added; Node 20.20 has 17.)
const UNICODE17 = hexRanges(
  '88f c5c cdc a7ce-a7cf a7d2 a7d4 a7f1 10940-10959 10ec5-10ec7 11db0-11ddb 11de0-11de9 16ea0-16eb8 ' +
    '16ebb-16ed3 16ff2-16ff6 187f8-187ff 18d09-18d1e 18d80-18df2 1e6c0-1e6de 1e6e0-1e6e2 1e6e4-1e6e5 ' +
    '1e6e7-1e6ed 1e6f0-1e6f4 1e6fe-1e6ff 2b73a-2b73f 2cea2-2cead 323b0-33479',
);
// Special tokens typed literally are matched case-sensitively on the raw text, before normalization.
const SPECIAL = /<\|startoftext\|>|<\|endoftext\|>/g;
// CLIP's pre-tokenizer: keep the matches, drop what lies between them (whitespace only).
// The 'v' flag allows the set subtraction. A special token reaching this regex (typed in another
// case, then lowercased) is one match, but the reference then re-splits every match with GPT-2's
// regex (its ByteLevel step), which cuts it into "<|", "endoftext", "|>"; no other match changes.
const PIECE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}--${UNICODE17}]+|[\\p{N}--${UNICODE17}]|` +
    `(?:[^${WS}\\p{L}\\p{N}]|${UNICODE17})+`,
  'gv',
);
// The reference's NFC lacks these compositions (Todhri, Tulu-Tigalari, Gurung Khema, Kirat Rai from
// Unicode 16; Dives Akuru from 13): it leaves e.g. U+11935 U+11930 apart where ICU makes U+11938.
// When a first character of such a pair occurs, NFC runs on pieces cut before each second character.
// Each code point in the class stands alone (some are combining marks by themselves).
// eslint-disable-next-line no-misleading-character-class
const NFC_FIRST = /[\u{105d2}\u{105da}\u{11382}\u{11384}\u{1138b}\u{11390}\u{113c2}\u{11935}\u{1611e}\u{16129}\u{16d63}\u{16d67}]/u;
const NFC_CUT =
  /(?=[\u{113b8}\u{113bb}\u{113c2}\u{113c9}\u{11930}\u{1611e}-\u{16120}\u{16129}\u{16d67}])|(?<=[\u{105d2}\u{105da}]\p{M}*)(?=\u0307)/u;

function hexRanges(list: string): string {
  const hex = (h: string): string => `\\u{${h}}`;
  return `[${list.split(' ').map((r) => r.split('-').map(hex).join('-')).join('')}]`;
}

function nfc(s: string): string {
  return NFC_FIRST.test(s) ? s.split(NFC_CUT).map((p) => p.normalize('NFC')).join('') : s.normalize('NFC');
}

// GPT-2's byte -> printable character table: BPE symbols are strings over these 256 characters.
function bytesToUnicode(): string[] {
  const table: string[] = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return table;
}
// Vocabulary order is the table's order: printable bytes first, then the remapped ones.
function byteVocabOrder(table: string[]): string[] {
  const printable = table.filter((c) => c.charCodeAt(0) < 256);
  return printable.concat(table.filter((c) => c.charCodeAt(0) >= 256));
}

// Lowercasing as the reference does it: char by char (Rust char::to_lowercase). String#toLowerCase
// would also apply the context-dependent Final_Sigma rule (word-final Σ -> ς), which the reference
// never does; Σ is the only character with a context-dependent mapping, so it is handled apart.
function lowercase(s: string): string {
  return s.includes('Σ') ? s.split('Σ').map((p) => p.toLowerCase()).join('σ') : s.toLowerCase();
}

const CACHE_LIMIT = 20000;

export class CLIPTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly vocabSize: number;

  private readonly encoder: Map<string, number>;
  private readonly ranks: Map<string, number>; // "a b" -> merge priority (lower merges first)
  private readonly byteChars: string[];
  private readonly cache = new Map<string, number[]>();

  private constructor(merges: string[]) {
    this.byteChars = bytesToUnicode();
    const tokens = byteVocabOrder(this.byteChars);
    for (let i = 0; i < 256; i++) tokens.push(tokens[i] + '</w>');
    this.ranks = new Map();
    merges.forEach((m, i) => {
      this.ranks.set(m, i);
      tokens.push(m.replace(' ', ''));
    });
    tokens.push(BOS, EOS);
    this.encoder = new Map(tokens.map((t, i) => [t, i]));
    this.vocabSize = tokens.length;
    this.bosId = this.encoder.get(BOS)!;
    this.eosId = this.encoder.get(EOS)!;
    this.padId = this.eosId; // SD 1.x tokenizers pad with <|endoftext|>
  }

  /** Reads the gzipped merges list; the default directory is the package's vocab/. */
  static load(vocabDir?: string): CLIPTokenizer {
    const file = vocabDir !== undefined ? path.join(vocabDir, VOCAB_FILE) : defaultVocabFile();
    const lines = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n');
    const merges = lines.slice(1, 1 + NUM_MERGES); // line 1 is a version header
    if (merges.length !== NUM_MERGES || merges.some((m) => m.split(' ').length !== 2)) {
      throw new Error(`${file}: expected ${NUM_MERGES} merges after the header`);
    }
    return new CLIPTokenizer(merges);
  }

  /** One row per text: BOS, up to maxLength-2 tokens, EOS, then `padId` (default EOS) to maxLength. */
  encodeIds(texts: string[], maxLength = 77, padId = this.padId): number[][] {
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`maxLength must be an integer >= 2`);
    return texts.map((text) => {
      const row = [this.bosId, ...this.tokenize(text).slice(0, maxLength - 2), this.eosId];
      while (row.length < maxLength) row.push(padId);
      return row;
    });
  }

  /** Token ids of the text alone: no BOS/EOS, no padding, no truncation. */
  tokenize(text: string): number[] {
    const ids: number[] = [];
    let start = 0;
    for (const m of text.matchAll(SPECIAL)) {
      this.tokenizeSegment(text.slice(start, m.index), ids);
      ids.push(m[0] === BOS ? this.bosId : this.eosId);
      start = m.index! + m[0].length;
    }
    this.tokenizeSegment(text.slice(start), ids);
    return ids;
  }

  private tokenizeSegment(segment: string, out: number[]): void {
    const normalized = lowercase(nfc(segment).replace(WS_RUN, ' '));
    for (const [piece] of normalized.matchAll(PIECE)) {
      let ids = this.cache.get(piece);
      if (ids === undefined) {
        ids = piece === BOS || piece === EOS ? ['<|', piece.slice(2, -2), '|>'].flatMap((w) => this.bpe(w)) : this.bpe(piece);
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(piece, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  // Classic BPE on one word: its UTF-8 bytes as symbols, "</w>" on the last one, then repeatedly
  // merge every occurrence (left to right) of the adjacent pair with the lowest rank.
  private bpe(word: string): number[] {
    let symbols = Array.from(Buffer.from(word, 'utf8'), (b) => this.byteChars[b]!);
    symbols.push(symbols.pop()! + '</w>');
    for (;;) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 1; i < symbols.length; i++) {
        const r = this.ranks.get(symbols[i - 1] + ' ' + symbols[i]);
        if (r !== undefined && r < best) [best, first, second] = [r, symbols[i - 1]!, symbols[i]!];
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      // A merged symbol is longer than `first`, so it never merges again in the same pass.
      for (const s of symbols) {
        if (s === second && merged[merged.length - 1] === first) merged[merged.length - 1] = first + second;
        else merged.push(s);
      }
      symbols = merged;
    }
    // Every symbol is in the vocabulary: single bytes (with or without </w>) and merge results.
    return symbols.map((s) => this.encoder.get(s)!);
  }
}

// vocab/ sits at the package root, two levels above lib/text/ (sources) or dist/text/ (compiled).
function defaultVocabFile(): string {
  const candidates = [path.join(__dirname, '..', '..', 'vocab', VOCAB_FILE)];
  const found = candidates.find((f) => fs.existsSync(f));
  if (found === undefined) throw new Error(`${VOCAB_FILE} not found; looked at ${candidates.join(', ')}`);
  return found;
}
