#!/usr/bin/env python3
"""Writes test/fixtures/tokenizer-corpus.json: reference CLIP token ids for lib/tokenizer.ts's tests.

The reference is transformers' CLIPTokenizer (transformers 5: the tokenizers-backed class diffusers
uses), built the way a Stable Diffusion 1.x checkpoint's tokenizer/ folder is, from a vocab.json and a
merges.txt. Those two are derived here from vocab/bpe_simple_vocab_16e6.txt.gz exactly as OpenAI's CLIP
does: merges are lines 2..48895 of the file; the vocabulary is the 256 byte symbols (GPT-2's
bytes_to_unicode order), the same with "</w>" appended, one token per merge (the pair joined), then
<|startoftext|> (49406) and <|endoftext|> (49407).

Before writing anything the script checks that this tokenizer reproduces `tokenizer.ids` of
test/fixtures/reference-1234.safetensors for the prompts of test/fixtures/prompts.json.

Each corpus entry is {"text", "ids", "tokens"}:
  ids    = tok(texts, padding="max_length", max_length=77, truncation=True)["input_ids"]
  tokens = tok(texts, add_special_tokens=False)["input_ids"]  (untruncated, no BOS/EOS/padding)

Usage: scripts/make_tokenizer_fixture.py [--check]
  --check  compare with the existing fixture instead of writing it (exit status 1 on a difference)
Needs: transformers 5 (tested with 5.18, tokenizers 0.23.2), safetensors, numpy. The tests don't.
"""
import argparse
import gzip
import json
import pathlib
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file
from transformers import CLIPTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "test" / "fixtures"
OUT = FIXTURES / "tokenizer-corpus.json"
NUM_MERGES = 49152 - 256 - 2


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_tokenizer(tmp: pathlib.Path) -> CLIPTokenizer:
    lines = gzip.open(ROOT / "vocab" / "bpe_simple_vocab_16e6.txt.gz").read().decode("utf-8").split("\n")
    merges = lines[1 : 1 + NUM_MERGES]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer.from_pretrained(str(tmp))
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (49406, 49407, 49407)
    return tok


def encode(tok, texts):
    return tok(texts, padding="max_length", max_length=77, truncation=True)["input_ids"]


def check_reference(tok):
    prompts = json.loads((FIXTURES / "prompts.json").read_text(encoding="utf-8"))
    expected = load_file(str(FIXTURES / "reference-1234.safetensors"))["tokenizer.ids"]
    got = np.array(encode(tok, prompts), dtype=np.int64)
    if got.shape != expected.shape or not (got == expected).all():
        sys.exit("the derived tokenizer does not reproduce reference-1234.safetensors tokenizer.ids")


WORDS = "masterpiece best quality highly detailed portrait of a woman with long hair cinematic lighting".split()


def corpus():
    c = [
        # plain prompts
        "a photo of an astronaut riding a horse on mars",
        "A Photo Of An Astronaut Riding A Horse On Mars",
        "A PHOTO OF AN ASTRONAUT RIDING A HORSE ON MARS",
        "portrait of a cyberpunk samurai, neon lights, rain, 8k, octane render, trending on artstation",
        "a cat",
        "cat",
        "Cat.",
        "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "xyzzy qwfp zxcvbnm asdfghjkl",
        # empty, whitespace only, whitespace variants
        "",
        " ",
        "   ",
        "\n",
        "\t",
        "\r\n",
        " \t\n\r\x0b\x0c ",
        "  leading and trailing  ",
        "tabs\tbetween\twords",
        "new\nlines\n\nand\r\ncarriage\rreturns",
        "vertical\x0btab and form\x0cfeed",
        "no\u00a0break\u00a0space",
        "ideographic\u3000space",
        "en\u2002em\u2003thin\u2009hair\u200aspaces",
        "next\u0085line and line\u2028separator and paragraph\u2029separator",
        "narrow\u202fnbsp medium\u205fmath ogham\u1680space",
        "zero\u200bwidth space",
        "byte\ufefforder mark",
        "\ufeffleading bom",
        "mongolian\u180evowel separator",
        "file\x1cseparator unit\x1fseparator",
        "null\x00char and del\x7fchar",
        "zero\u200dwidth joiner and non\u200cjoiner",
        "word\u2060joiner and soft\u00adhyphen",
        # punctuation
        "Hello, world!",
        "what?! no... yes!!!",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ".......... ---------- __________ ~~~~~~~~~~",
        "a_b-c.d,e;f:g/h\\i|j",
        "email@example.com https://example.com/path?query=1&x=y#frag",
        "#hashtag @mention $100 50% 3*4=12 a+b^c ~tilde `backtick`",
        "[brackets] {braces} (parens) <angles>",
        "“curly quotes” ‘single’ «guillemets» „low“ —em dash– en dash … ellipsis",
        "•bullet · middle dot ¶ pilcrow § section † dagger",
        "©2024 ®registered ™trademark",
        "€5 £3 ¥100 ₹20 ₿1",
        "→ ← ↑ ↓ ⇒ ≠ ≤ ≥ ∞ √ ∑ ∫",
        # accents, NFC/NFD, combining marks
        "naïve café résumé",
        "nai\u0308ve cafe\u0301 re\u0301sume\u0301",
        "A\u030angstro\u0308m vs \u00c5ngstr\u00f6m vs \u212bngstr\u00f6m",
        "\u1100\u1161\u11a8 decomposed hangul \uac01",
        "Vi\u1ec7t Nam Vie\u0323\u0302t Nam Vie\u0302\u0323t Nam",
        "a\u0301\u0323 vs a\u0323\u0301",
        "\u0301 lone combining acute",
        "zalgo: h\u0336\u0301\u0315e\u0335\u0300\u034el\u0337\u0351l\u0334\u0308o\u0338\u035d",
        "Ünïcödé ÀÉÎÕÜ àéîõü ÇçÑñ Øø Ææ Œœ Łł Đđ Þþ",
        "Straße STRASSE ß ẞ",
        "İstanbul ISTANBUL ıi",
        "ΟΔΟΣ οδος ΣΙΣΥΦΟΣ Σ ΑΣ. αΣ",
        "Kelvin \u212a and Ohm \u2126 and micro \u00b5",
        "ǅungla ǈubljana ǋjegoš",
        # scripts
        "日本語のテキスト",
        "東京タワー、夜景、美しい",
        "中文提示词：一只猫坐在窗台上",
        "한국어 프롬프트 고양이",
        "ひらがな カタカナ ｶﾀｶﾅ",
        "Привет мир, ПРИВЕТ МИР",
        "Γειά σου Κόσμε",
        "مرحبا بالعالم",
        "שלום עולם",
        "नमस्ते दुनिया",
        "สวัสดีชาวโลก",
        "ሰላም ለዓለም",
        "ᚠᛇᚻ runes ᛒᛖᚱ",
        "𝐁𝐨𝐥𝐝 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝒮𝒸𝓇𝒾𝓅𝓉 𝟙𝟚𝟛",
        "Ⓐⓑⓒ ①②③ ⑴⑵⑶",
        # emoji
        "🐱🚀",
        "🐱 cat 🐶 dog",
        "👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿",
        "👨‍👩‍👧‍👦 family",
        "👩🏽‍💻 technologist 🧑‍🚀 astronaut",
        "🏳️‍🌈 🏴‍☠️ 🇯🇵 🇺🇸 🇩🇪",
        "1️⃣ 2️⃣ #️⃣ *️⃣",
        "❤️ ❤ ♥️ ☺️",
        "🔥🔥🔥🔥🔥🔥🔥🔥",
        "✨sparkles✨ 🌈rainbow🌈",
        # HTML entities and markup (no unescaping: they stay literal)
        "naïve café – “quotes” & ampersands &amp; <tags> 日本語のテキスト 🐱🚀",
        "&amp; &lt; &gt; &quot; &#39; &nbsp; &#x27; &copy;",
        "<b>bold</b> <i>italic</i> <br/>",
        "Tom &amp; Jerry",
        # full-width forms and ligatures
        "ｆｕｌｌｗｉｄｔｈ ﬁ ligature Ünïcödé ÀÉÎÕÜ ß",
        "ＦＵＬＬＷＩＤＴＨ ＡＢＣ １２３ ！？（）",
        "ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ ﬆ",
        "ﬁnancial oﬃce",
        "Ⅻ ⅻ Ⅳ",
        # numbers
        "1234567890",
        "3.14159 2.71828",
        "1,000,000 and 1.000.000",
        "1st 2nd 3rd 4th 21st",
        "8k 4K 1080p 720P 16:9 f/1.8 50mm ISO100",
        "½ ¼ ¾ ² ³ ¹ ⅓",
        "٠١٢٣٤٥٦٧٨٩ ०१२३ ๑๒๓",
        "-42 +3 1e10 0x1F 0b1010",
        "year 2024, 1999-2001",
        # contractions and apostrophes
        "don't can't it's we'll I'm you're they've he'd",
        "DON'T CAN'T IT'S WE'LL I'M YOU'RE THEY'VE HE'D",
        "HELLO World!!! 1234567890 don't can't it's we'll I'M",
        "Don'T It'S We'Ll",
        "don’t it’s we’ll",
        "don`t it`s",
        "don''t it''s",
        "'s 't 're 've 'm 'll 'd",
        "'S 'T 'RE 'VE 'M 'LL 'D",
        "'sup 'tis 'twas 'em",
        "o'clock rock'n'roll ma'am y'all",
        "the cat's toy's color",
        "'quoted' \"double\" '''triple'''",
        "it's's 'ss 'lll 'dd",
        # prompt syntax (A1111 / ComfyUI / compel)
        "(masterpiece:1.2), [blurry], ((best quality)), \\(escaped\\)",
        "(word:1.2)",
        "(word:1.2) (other word:0.8) [neg:0.5]",
        "((((very emphasized))))",
        "[[[de-emphasized]]]",
        "a (red:1.3) ball on a (blue:0.7) table",
        "<lora:detail_tweaker:0.8> <hypernet:anime:1>",
        "embedding:EasyNegative",
        "cat BREAK dog AND bird",
        "{red|green|blue} ball",
        "[cat:dog:0.5]",
        "(masterpiece:1.2)(best quality:1.1)",
        "score_9, score_8_up, score_7_up",
        "masterpiece++ ugly-- (worst quality)0.5",
        # special token strings typed literally
        "<|startoftext|>",
        "<|endoftext|>",
        "<|startoftext|><|endoftext|>",
        "a photo<|endoftext|>of a cat",
        "<|startoftext|>hello world<|endoftext|>",
        "!!<|endoftext|>!!",
        "<|ENDOFTEXT|>",
        "<|EndOfText|>!!",
        "a<|StartOfText|>b",
        "<<|endoftext|>>",
        "<|endoftext",
        "endoftext|>",
        "< |endoftext| >",
        "<|endoftext |>",
        "<|endoftext|><|endoftext|><|endoftext|>",
        "&lt;|endoftext|&gt;",
        "<|unknown|> <|im_start|>",
        # Unicode 17 letters (unassigned for the reference) and an NFC composition the reference lacks
        # (Dives Akuru, Unicode 13). Unicode 16 scripts are left out: how Node classifies them depends
        # on the ICU it was built with.
        "word\ua7ceword \U00010940\U00010941",
        "\U00011935\U00011930 vs \U00011938",
        # odd characters
        "\ufffd replacement char",
        "\ue000\uf8ff private use",
        "\U0010fffd plane 16",
        "tab\tseparated\tvalues\nand\nlines",
    ]
    # truncation: around the 75-token boundary and far beyond it
    c += [" ".join(["a"] * n) for n in (74, 75, 76, 77, 100)]
    c.append("word " * 100)
    c.append(", ".join(WORDS * 10))
    c.append("日本語" * 40)
    c.append("🐱" * 30)
    c.append("supercalifragilisticexpialidocious " * 20)
    c.append("(masterpiece:1.2), " * 20)
    c.append("<|endoftext|>" * 80)
    c.append("a " * 74 + "supercalifragilisticexpialidocious")
    c.append(
        "An extremely detailed and intricate digital painting of a majestic ancient dragon perched atop a crumbling "
        "gothic cathedral during a violent thunderstorm, lightning illuminating its iridescent scales, rain streaming "
        "down weathered gargoyles, volumetric fog, dramatic chiaroscuro lighting, by Greg Rutkowski and Alphonse Mucha, "
        "trending on ArtStation, unreal engine 5, 8k resolution, hyperrealistic, cinematic composition"
    )
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the existing fixture instead of writing it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(pathlib.Path(tmp))
        check_reference(tok)
        texts = corpus()
        assert len(set(texts)) == len(texts), "duplicate corpus entries"
        ids = encode(tok, texts)
        tokens = tok(texts, add_special_tokens=False)["input_ids"]
    entries = [{"text": t, "ids": i, "tokens": k} for t, i, k in zip(texts, ids, tokens)]
    text = "[\n" + ",\n".join(json.dumps(e, ensure_ascii=True) for e in entries) + "\n]\n"
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print(f"{OUT.relative_to(ROOT)}: {'up to date' if same else 'DIFFERS'} ({len(entries)} entries)")
        sys.exit(0 if same else 1)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(entries)} entries")


if __name__ == "__main__":
    main()
