// Prompt text -> the UNet's cross-attention context, as AUTOMATIC1111 builds it
// (modules/sd_hijack_clip.py, modules/sd_emphasis.py): the prompt is split into weighted fragments
// (prompt.ts), tokenized, cut into chunks of 75 tokens (comma backtracking, BREAK, embeddings never
// split), each chunk encoded alone as [start, 75 tokens, end], weights applied per token, chunks
// concatenated: [B, 77·k, width]. Textual-inversion embeddings enter as token-embedding vectors.
// SDXL (A1111's sd_models_xl + sgm's GeneralConditioner): every chunk goes through each encoder with
// its own pad token and embedding vectors, emphasis applies per encoder, and the outputs are joined
// along the width (768 + 1280); the pooled vector is the last encoder's, of the first chunk, unweighted.
import type { TextEncoder } from '../models/networks';
import { Tensor } from '../tensor';
import type { CLIPTokenizer } from './clip-tokenizer';
import { parseAttention } from './prompt';

/** Tokens of a prompt per chunk, without the start and end tokens. */
export const CHUNK_LENGTH = 75;

/**
 * How weights act (A1111's "Emphasis mode"): 'original' multiplies each token's output by its
 * weight then restores the chunk's mean (A1111's default); 'no-norm' multiplies only; 'ignore'
 * parses the syntax but weights nothing; 'none' reads brackets as plain text.
 */
export type Emphasis = 'original' | 'no-norm' | 'ignore' | 'none';
export const EMPHASIS: readonly Emphasis[] = ['original', 'no-norm', 'ignore', 'none'];

/** A textual-inversion embedding: its name (the file name) and vectors [n, width] float32. */
export interface TextualInversion {
  name: string;
  /** The vectors for the first text encoder [n, width] (SDXL: clip_l). */
  vectors: Tensor;
  /** One [n, width_i] per text encoder when the model has several (SDXL: clip_l, clip_g). */
  encoders?: Tensor[];
  /** A1111's short hash: the first 12 hex digits of the file's sha256 (for "TI hashes"). */
  hash: string;
  /** Why this file cannot serve the model (another width...): a prompt that uses the name fails with it. */
  error?: string;
}

/** One chunk: 77 token ids, 77 weights, and where embeddings' vectors go. */
export interface Chunk {
  tokens: number[];
  multipliers: number[];
  fixes: Array<{ offset: number; embedding: TextualInversion }>;
}

/** Embeddings by the tokens of their names (A1111's EmbeddingDatabase.find_embedding_at_position). */
export class EmbeddingDb {
  private readonly byFirst = new Map<number, Array<{ ids: number[]; embedding: TextualInversion }>>();
  constructor(private readonly tokenizer: CLIPTokenizer, embeddings: Iterable<TextualInversion> = []) {
    for (const e of embeddings) this.add(e);
  }
  add(embedding: TextualInversion): void {
    const ids = this.tokenizer.tokenize(embedding.name);
    if (ids.length === 0) return;
    const list = this.byFirst.get(ids[0]!) ?? [];
    list.push({ ids, embedding });
    list.sort((a, b) => b.ids.length - a.ids.length); // the longest name that matches wins
    this.byFirst.set(ids[0]!, list);
  }
  /** The embedding whose name's tokens start at `offset`, and how many tokens the name takes. */
  findAt(tokens: number[], offset: number): { embedding: TextualInversion; length: number } | undefined {
    for (const { ids, embedding } of this.byFirst.get(tokens[offset]!) ?? [])
      if (ids.every((id, i) => tokens[offset + i] === id)) return { embedding, length: ids.length };
    return undefined;
  }
}

export interface ChunkOptions {
  emphasis: Emphasis;
  /** A1111's comma_padding_backtrack: move text after a comma this near the chunk end to the next chunk (default 20; 0 = off). */
  commaBacktrack: number;
}

/**
 * One prompt -> its chunks and its token count (A1111's tokenize_line): BREAK starts a new chunk;
 * a chunk that fills up moves the text after a comma within the last `commaBacktrack` tokens to
 * the next chunk; an embedding that does not fit is moved whole to the next chunk.
 */
export function tokenizeLine(line: string, tokenizer: CLIPTokenizer, db: EmbeddingDb, opts: ChunkOptions): { chunks: Chunk[]; tokenCount: number } {
  const parsed: Array<[string, number]> = opts.emphasis === 'none' ? [[line, 1]] : parseAttention(line);
  const comma = tokenizer.tokenize(',')[0];
  const chunks: Chunk[] = [];
  let chunk: Chunk = { tokens: [], multipliers: [], fixes: [] };
  let tokenCount = 0;
  let lastComma = -1;

  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? chunk.tokens.length : CHUNK_LENGTH;
    const pad = CHUNK_LENGTH - chunk.tokens.length;
    if (pad > 0) {
      chunk.tokens.push(...Array<number>(pad).fill(tokenizer.eosId));
      chunk.multipliers.push(...Array<number>(pad).fill(1));
    }
    chunk.tokens = [tokenizer.bosId, ...chunk.tokens, tokenizer.eosId];
    chunk.multipliers = [1, ...chunk.multipliers, 1];
    lastComma = -1;
    chunks.push(chunk);
    chunk = { tokens: [], multipliers: [], fixes: [] };
  };

  for (const [text, weight] of parsed) {
    if (text === 'BREAK' && weight === -1) {
      nextChunk();
      continue;
    }
    const tokens = tokenizer.tokenize(text);
    let position = 0;
    while (position < tokens.length) {
      const token = tokens[position]!;
      if (token === comma) lastComma = chunk.tokens.length;
      else if (opts.commaBacktrack !== 0 && chunk.tokens.length === CHUNK_LENGTH && lastComma !== -1 && chunk.tokens.length - lastComma <= opts.commaBacktrack) {
        const at = lastComma + 1;
        const relocTokens = chunk.tokens.slice(at);
        const relocMults = chunk.multipliers.slice(at);
        chunk.tokens = chunk.tokens.slice(0, at);
        chunk.multipliers = chunk.multipliers.slice(0, at);
        nextChunk();
        chunk.tokens = relocTokens;
        chunk.multipliers = relocMults;
      }
      if (chunk.tokens.length === CHUNK_LENGTH) nextChunk();
      const found = db.findAt(tokens, position);
      if (found === undefined) {
        chunk.tokens.push(token);
        chunk.multipliers.push(weight);
        position += 1;
        continue;
      }
      if (found.embedding.error !== undefined) throw new Error(`the prompt or negative prompt uses embedding '${found.embedding.name}', which cannot be used: ${found.embedding.error}`);
      const n = found.embedding.vectors.shape[0]!;
      if (chunk.tokens.length + n > CHUNK_LENGTH) nextChunk();
      chunk.fixes.push({ offset: chunk.tokens.length, embedding: found.embedding });
      chunk.tokens.push(...Array<number>(n).fill(0));
      chunk.multipliers.push(...Array<number>(n).fill(weight));
      position += found.length;
    }
  }
  if (chunk.tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount };
}

export interface EncodeOptions extends ChunkOptions {
  /** A1111's "Clip skip": 1 = the family's own layer (SD 1.x: the last), 2 = one earlier (+ final layer norm for SD 1.x/2.x). */
  clipSkip: number;
  /** The text encoder's pad token: after a chunk's first end token every position holds it (default: the end token, SD 1.x; 0 for SD 2). */
  padToken?: number;
  /** Also return the pooled output of the last encoder (SDXL's text_embeds). */
  pooled?: boolean;
}

/** One of several text encoders (SDXL) with the token that pads its chunks. */
export interface EncoderUse {
  encoder: TextEncoder;
  padToken: number;
}

/**
 * A chunk's ids as the encoder takes them: A1111's process_tokens for encoders whose pad token is
 * not the end token (SD 2's OpenCLIP): every position after the first end token holds the pad token.
 */
function padAfterEnd(tokens: number[], end: number, pad: number): number[] {
  const at = tokens.indexOf(end);
  return pad === end || at < 0 ? tokens : tokens.map((t, i) => (i > at ? pad : t));
}

export interface Encoded {
  /** [texts, 77·k, width]: k the most chunks of any text (shorter texts get empty chunks); width = the encoders' widths summed. */
  context: Tensor;
  /** With `pooled`: [texts, projection], the last encoder's pooled output of each text's first chunk. */
  pooled?: Tensor;
  /** The most tokens of any text (A1111's token count). */
  tokenCount: number;
  /** Embeddings the texts used. */
  used: Set<TextualInversion>;
}

/**
 * Texts -> context, as A1111's FrozenCLIPEmbedderWithCustomWordsBase.forward: chunk i of every text
 * is encoded in one batch (an empty chunk for texts with fewer), with emphasis applied over that
 * batch (the mean is the batch's, as A1111's), and the chunks are concatenated along tokens.
 */
export async function encodeTexts(
  texts: string[], encoder: TextEncoder | EncoderUse[], tokenizer: CLIPTokenizer, db: EmbeddingDb, opts: EncodeOptions,
): Promise<Encoded> {
  const encoders: EncoderUse[] = Array.isArray(encoder) ? encoder : [{ encoder, padToken: opts.padToken ?? tokenizer.eosId }];
  const lines = texts.map((t) => tokenizeLine(t, tokenizer, db, opts));
  const count = Math.max(...lines.map((l) => l.chunks.length));
  const empty = (): Chunk => ({ tokens: [tokenizer.bosId, ...Array<number>(CHUNK_LENGTH + 1).fill(tokenizer.eosId)], multipliers: Array<number>(CHUNK_LENGTH + 2).fill(1), fixes: [] });
  const used = new Set<TextualInversion>();
  const zs: Tensor[] = [];
  let pooled: Tensor | undefined;
  for (let i = 0; i < count; i++) {
    const batch = lines.map((l) => l.chunks[i] ?? empty());
    const width = CHUNK_LENGTH + 2;
    const index: bigint[] = [];
    const fixes: Array<{ embedding: TextualInversion }> = [];
    batch.forEach((c, b) =>
      c.fixes.forEach(({ offset, embedding }) => {
        used.add(embedding);
        // offset counts from after the start token
        for (let j = 0; j < embedding.vectors.shape[0]!; j++) index.push(BigInt(b * width + 1 + offset + j));
        fixes.push({ embedding });
      }),
    );
    const parts: Tensor[] = [];
    for (const [e, { encoder: net, padToken }] of encoders.entries()) {
      const ids = Tensor.from(BigInt64Array.from(batch.flatMap((c) => padAfterEnd(c.tokens, tokenizer.eosId, padToken)), (v) => BigInt(v)), [batch.length, width], 'int64');
      const inject = index.length
        ? { index: Tensor.from(BigInt64Array.from(index), [index.length], 'int64'), vectors: Tensor.cat(fixes.map((f) => vectorsFor(f.embedding, e))) }
        : undefined;
      const options = { clipSkip: opts.clipSkip, ...(inject ? { inject } : {}) };
      const last = e === encoders.length - 1;
      let z: Tensor;
      if (last && opts.pooled && i === 0) ({ context: z, pooled } = await net.forwardPooled(ids, options));
      else z = await net.forward(ids, options);
      parts.push(emphasize(z, batch, opts.emphasis));
    }
    zs.push(parts.length === 1 ? parts[0]! : Tensor.cat(parts, 2));
  }
  return {
    context: zs.length === 1 ? zs[0]! : Tensor.cat(zs, 1),
    ...(pooled ? { pooled } : {}),
    tokenCount: Math.max(...lines.map((l) => l.tokenCount)),
    used,
  };
}

/** An embedding's vectors for text encoder `e`. */
function vectorsFor(embedding: TextualInversion, e: number): Tensor {
  const v = e === 0 ? embedding.vectors : embedding.encoders?.[e];
  if (v === undefined) throw new Error(`embedding '${embedding.name}' has no vectors for text encoder ${e + 1} of this model`);
  return v;
}

/** A1111's sd_emphasis: z [B, 77, width] times each token's weight, then (original) the old mean restored. */
function emphasize(z: Tensor, batch: Chunk[], emphasis: Emphasis): Tensor {
  if (emphasis === 'ignore' || emphasis === 'none' || batch.every((c) => c.multipliers.every((m) => m === 1))) return z; // z · 1 = z exactly
  const weights = Tensor.from(Float32Array.from(batch.flatMap((c) => c.multipliers)), [batch.length, CHUNK_LENGTH + 2, 1]).to(z.device, z.dtype);
  const numel = z.shape.reduce((a, b) => a * b, 1);
  const weighted = z.mul(weights);
  if (emphasis === 'no-norm') return weighted;
  const before = z.to(undefined, 'float32').sum() / numel;
  const after = weighted.to(undefined, 'float32').sum() / numel;
  return weighted.mul(Math.fround(before) / Math.fround(after));
}
