// Long prompts, emphasis, BREAK, embeddings and clip skip on the tiny model, against a reference
// written from A1111's sd_hijack_clip.py / sd_emphasis.py with A1111's own prompt parser, and
// against diffusers' clip_skip and load_textual_inversion (scripts/make_conditioning_fixture.py).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import { EmbeddingDb, encodeTexts, type Emphasis } from '../lib/text/conditioning';
import { loadEmbedding, loadEmbeddingDirs } from '../lib/text/embeddings';
import { relErrTensor as relErr } from './helpers';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';

const fixtures = path.join(repoRoot, 'test', 'fixtures');
const EMPHASIS: Record<string, Emphasis> = { Original: 'original', 'No norm': 'no-norm', Ignore: 'ignore', None: 'none' };

describe('prompt conditioning (tiny model) equals A1111 and diffusers', function () {
  let pipe: sd.Pipeline;
  let ref: Record<string, sd.Tensor>;
  let db: EmbeddingDb;
  const meta = JSON.parse(fs.readFileSync(path.join(fixtures, 'conditioning-reference.json'), 'utf8')) as {
    cases: Record<string, { texts: string[]; emphasis: string; clipSkip: number; tokenCount: number }>;
  };
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    ref = await sd.loadTensors(path.join(fixtures, 'conditioning-reference.safetensors'));
    db = new EmbeddingDb(pipe.tokenizer.bpe, await loadEmbeddingDirs([path.join(fixtures, 'embeddings')], 32));
  });
  after(() => pipe?.dispose());

  for (const [key, c] of Object.entries(meta.cases)) {
    it(`${key}: context within 1e-4, same token count`, async function () {
      const r = await encodeTexts(c.texts, pipe.textEncoder, pipe.tokenizer.bpe, db, { emphasis: EMPHASIS[c.emphasis]!, clipSkip: c.clipSkip, commaBacktrack: 20 });
      const want = ref[key]!;
      assert.deepEqual(r.context.shape, want.shape);
      const e = relErr(r.context, want);
      assert.ok(e < 1e-4, `relative error ${e}`);
      assert.equal(r.tokenCount, c.tokenCount);
    });
  }

  it("clip skip equals diffusers' clip_skip (A1111's 2 is diffusers' 1)", async function () {
    for (const [ours, theirs] of [[1, 'None'], [2, '1']] as const) {
      const r = await encodeTexts(['a photo of a cat'], pipe.textEncoder, pipe.tokenizer.bpe, new EmbeddingDb(pipe.tokenizer.bpe), { emphasis: 'original', clipSkip: ours, commaBacktrack: 20 });
      const e = relErr(r.context, ref[`diffusers.clip_skip.${theirs}`]!);
      assert.ok(e < 1e-5, `clipSkip ${ours}: relative error ${e}`);
    }
  });

  it("an embedding equals diffusers' load_textual_inversion", async function () {
    const r = await encodeTexts(['a painting in darkstyle of a house'], pipe.textEncoder, pipe.tokenizer.bpe, db, { emphasis: 'original', clipSkip: 1, commaBacktrack: 20 });
    const e = relErr(r.context, ref['diffusers.textual_inversion']!);
    assert.ok(e < 1e-5, `relative error ${e}`);
    assert.deepEqual([...r.used].map((x) => x.name), ['darkstyle']);
  });

  it('reads A1111 .pt, .safetensors (emb_params) and diffusers learned_embeds; other widths are named errors', async function () {
    const dir = path.join(fixtures, 'embeddings');
    const shapes = await Promise.all(['shinycat.pt', 'darkstyle.safetensors', 'mytok.bin'].map(async (f) => (await loadEmbedding(path.join(dir, f), 32)).vectors.shape));
    assert.deepEqual(shapes, [[2, 32], [3, 32], [1, 32]]);
    await assert.rejects(loadEmbedding(path.join(dir, 'darkstyle.safetensors'), 768), /darkstyle\.safetensors is an embedding of width 32; this model's text encoder takes 768-wide vectors/);
    // in a folder, such a file only fails prompts that use it
    const db768 = new EmbeddingDb(pipe.tokenizer.bpe, await loadEmbeddingDirs([dir], 768));
    assert.throws(() => db768.findAt(pipe.tokenizer.bpe.tokenize('x'), 0) ?? (() => { throw new Error('no match'); })(), /no match/);
    await assert.rejects(
      encodeTexts(['a darkstyle cat'], pipe.textEncoder, pipe.tokenizer.bpe, db768, { emphasis: 'original', clipSkip: 1, commaBacktrack: 20 }),
      /the prompt uses embedding 'darkstyle', which cannot be used: .*width 32/,
    );
  });

  it('generate(): long prompts are not cut, clip skip and embeddings reach the infotext as A1111 writes them', async function () {
    const long = Array.from({ length: 120 }, (_, i) => `word${i % 30}`).join(' ');
    const base = { width: 16, height: 16, steps: 2, seed: 3 } as const;
    const a = await pipe.generate({ ...base, prompt: long, decode: false });
    const b = await pipe.generate({ ...base, prompt: `${long} extra words at the end`, decode: false });
    assert.ok(a.latents.sub(b.latents).norm() > 0, 'words past 75 tokens change the image');
    const r = await pipe.generate({ ...base, prompt: 'a (darkstyle:1.2) cat', negativePrompt: 'shinycat', clipSkip: 2, embeddingDirs: [path.join(fixtures, 'embeddings')] });
    assert.match(r.infotexts[0]!, /Clip skip: 2, TI hashes: "darkstyle: [0-9a-f]{12}, shinycat: [0-9a-f]{12}"/);
    await assert.rejects(pipe.generate({ ...base, prompt: 'x', clipSkip: 3 }), /clipSkip must be at most 2 for this text encoder, got 3/);
  });
});
