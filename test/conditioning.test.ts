// Long prompts, emphasis, BREAK, embeddings and clip skip on the tiny model, against a reference
// written from A1111's sd_hijack_clip.py / sd_emphasis.py with A1111's own prompt parser, and
// against diffusers' clip_skip and load_textual_inversion (scripts/make_conditioning_fixture.py).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { Tokenizer } from '../lib/models/networks';
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
    const shapes = await Promise.all(['shinycat.pt', 'darkstyle.safetensors', 'mytok.bin', 'legacyparams.pt'].map(async (f) => (await loadEmbedding(path.join(dir, f), 32)).vectors.shape));
    assert.deepEqual(shapes, [[2, 32], [3, 32], [1, 32], [2, 32]]);
    await assert.rejects(loadEmbedding(path.join(dir, 'darkstyle.safetensors'), 768), /darkstyle\.safetensors is an embedding of width 32; this model's text encoder takes 768-wide vectors/);
    // in a folder, such a file only fails prompts that use it
    const db768 = new EmbeddingDb(pipe.tokenizer.bpe, await loadEmbeddingDirs([dir], 768));
    await assert.rejects(
      encodeTexts(['a darkstyle cat'], pipe.textEncoder, pipe.tokenizer.bpe, db768, { emphasis: 'original', clipSkip: 1, commaBacktrack: 20 }),
      /the prompt or negative prompt uses embedding 'darkstyle', which cannot be used: .*width 32/,
    );
  });

  it('generate(): long prompts are not cut, clip skip and embeddings reach the infotext as A1111 writes them', async function () {
    const long = Array.from({ length: 120 }, (_, i) => `word${i % 30}`).join(' ');
    const base = { width: 16, height: 16, steps: 2, seed: 3 } as const;
    const a = await pipe.generate({ ...base, prompt: long, decode: false });
    const b = await pipe.generate({ ...base, prompt: `${long} extra words at the end`, decode: false });
    assert.ok(a.latents.sub(b.latents).norm() > 0, 'words past 75 tokens change the image');
    const r = await pipe.generate({ ...base, prompt: 'a (darkstyle:1.2) cat', negativePrompt: 'shinycat', clipSkip: 2, embeddingDirs: [path.join(fixtures, 'embeddings')], decode: true });
    assert.match(r.infotexts[0]!, /Clip skip: 2, TI hashes: "darkstyle: [0-9a-f]{12}, shinycat: [0-9a-f]{12}"/);
    await assert.rejects(pipe.generate({ ...base, prompt: 'x', clipSkip: 3 }), /clipSkip must be at most 2 for this text encoder, got 3/);
  });

  it('prompt editing and alternation change the context during sampling (counted in model evaluations)', async function () {
    const base = { width: 16, height: 16, steps: 4, seed: 5, decode: false, sampler: 'euler' } as const;
    const cat = await pipe.generate({ ...base, prompt: 'a cat' });
    const dog = await pipe.generate({ ...base, prompt: 'a dog' });
    const diff = (a: sd.GenerateResult, b: sd.GenerateResult) => a.latents.sub(b.latents).norm();
    assert.equal(diff(await pipe.generate({ ...base, prompt: 'a [cat:dog:10]' }), cat), 0, 'an edit after the last step never happens');
    assert.equal(diff(await pipe.generate({ ...base, prompt: 'a [cat|cat]' }), cat), 0);
    const edited = await pipe.generate({ ...base, prompt: 'a [cat:dog:0.5]' });
    assert.ok(diff(edited, cat) > 0 && diff(edited, dog) > 0, 'half cat, half dog');
    // steps in the edit count model evaluations: heun makes 2 per step, so 0.5 switches at its 4th
    const heun = { ...base, sampler: 'heun' };
    assert.ok(diff(await pipe.generate({ ...heun, prompt: 'a [cat:dog:0.5]' }), await pipe.generate({ ...heun, prompt: 'a cat' })) > 0);
  });

  it('a negative prompt of another length runs apart, or padded as asked', async function () {
    const base = { width: 16, height: 16, steps: 2, seed: 6, decode: false, prompt: Array(80).fill('cat').join(' '), negativePrompt: 'blurry' } as const;
    const apart = await pipe.generate(base);
    const padded = await pipe.generate({ ...base, padCondUncond: true });
    const v0 = await pipe.generate({ ...base, padCondUncond: 'v0' });
    for (const r of [apart, padded, v0]) assert.ok(r.latents.allFinite());
    assert.ok(apart.latents.sub(padded.latents).norm() > 0 && padded.latents.sub(v0.latents).norm() > 0);
  });
});

describe('LoRAs in generate() (tiny model)', function () {
  let pipe: sd.Pipeline;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-loradir-'));
  const file = path.join(dir, 'sub', 'detail.safetensors');
  const base = { prompt: 'a cat', width: 16, height: 16, steps: 2, seed: 4, decode: false } as const;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    fs.mkdirSync(path.dirname(file));
    fs.copyFileSync(path.join(fixtures, 'lora', 'tiny-loha.safetensors'), file);
  });
  after(() => pipe?.dispose());

  it('a <lora:name:w> tag found in loraDirs equals loras: [{ path, weight }]; the next job without one is the base, bit for bit', async function () {
    const plain = await pipe.generate(base);
    const tagged = await pipe.generate({ ...base, prompt: 'a cat <lora:detail:0.7>', loraDirs: [dir] });
    const given = await pipe.generate({ ...base, loras: [{ path: file, weight: 0.7 }] });
    assert.ok(tagged.latents.sub(plain.latents).norm() > 0, 'the LoRA changes the image');
    assert.equal(tagged.latents.sub(given.latents).norm(), 0);
    assert.equal((await pipe.generate(base)).latents.sub(plain.latents).norm(), 0);
    const png = await pipe.generate({ ...base, prompt: 'a cat <lora:detail:0.7>', loraDirs: [dir], decode: true });
    assert.match(png.infotexts[0]!, /^a cat <lora:detail:0\.7>\n.*Lora hashes: "detail: [0-9a-f]{12}"/);
  });

  it('an unknown tag, or two weights for one LoRA, is a clear error', async function () {
    await assert.rejects(pipe.generate({ ...base, prompt: 'a cat <lora:nothere:1>', loraDirs: [dir] }), /the prompt asks for LoRA 'nothere', which is not in the LoRA folders .*there are: detail/);
    await assert.rejects(pipe.generate({ ...base, prompt: 'a cat <lora:detail:1:0.5>', loraDirs: [dir] }), /separate text-encoder and UNet weights are not supported/);
    await assert.rejects(pipe.generate({ ...base, prompt: 'a cat <lora:x:abc>', loraDirs: [dir] }), /<lora:x:abc>: the weight must be a number/);
  });
});

describe("SD 2's pad token (A1111's process_tokens, diffusers' SD 2 tokenizer)", function () {
  /** A stand-in text encoder that returns its ids as the context, so the test sees what it was given. */
  const echo = { forward: async (ids: sd.Tensor) => sd.Tensor.from(Float64Array.from(ids.toArray() as BigInt64Array, Number), [ids.shape[0]!, ids.shape[1]!, 1]) };
  const bpe = sd.CLIPTokenizer.load();
  const db = new EmbeddingDb(bpe);
  const ids = async (texts: string[], padToken?: number) => {
    const { context } = await encodeTexts(texts, echo as never, bpe, db, { emphasis: 'original', clipSkip: 1, commaBacktrack: 20, ...(padToken !== undefined ? { padToken } : {}) });
    return [...(context.toArray() as Float64Array)];
  };

  it('pads with 0 after the first end token; SD 1.x (the default) keeps <|endoftext|>', async function () {
    const sd2 = await ids(['a cat', ''], 0);
    assert.deepEqual(sd2.slice(0, 6), [49406, 320, 2368, 49407, 0, 0]);
    assert.ok(sd2.slice(4, 77).every((t) => t === 0));
    assert.deepEqual(sd2.slice(77, 80), [49406, 49407, 0]);
    assert.ok(sd2.slice(79, 154).every((t) => t === 0));
    const sd1 = await ids(['a cat']);
    assert.ok(sd1.slice(3).every((t) => t === 49407));
    // a full chunk has no padding: 75 tokens, then the end token
    const long = await ids([Array(75).fill('cat').join(' ')], 0);
    assert.deepEqual([long[0], long[75], long[76]], [49406, 2368, 49407]);
  });

  it("the tokenizer facade pads with the family's pad token", function () {
    const row = [...(new Tokenizer(bpe, 0).encode('a cat').toArray() as BigInt64Array)].map(Number);
    assert.deepEqual(row.slice(0, 6), [49406, 320, 2368, 49407, 0, 0]);
  });
});
