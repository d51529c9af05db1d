#!/usr/bin/env python3
"""Reference contexts for long prompts, emphasis, BREAK, embeddings and clip skip on the tiny model.

The chunking and emphasis below are written from AUTOMATIC1111's modules/sd_hijack_clip.py
(FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line / forward / process_tokens) and
modules/sd_emphasis.py, with A1111's own modules/prompt_parser.py for parse_prompt_attention
(pass the path of a local copy; it needs `lark`). The text encoder is transformers' CLIPTextModel
with the tiny preset's weights (make_tiny_fixture.py), the tokenizer transformers' CLIPTokenizer
(make_tokenizer_fixture.py). Clip skip is diffusers' definition (hidden_states[-(skip)] then the
final layer norm), and one case goes through diffusers' own load_textual_inversion + encode_prompt.

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_conditioning_fixture.py PROMPT_PARSER_PY
Writes test/fixtures/conditioning-reference.safetensors and conditioning-reference.json, and the
embedding files in test/fixtures/embeddings/.
"""
import importlib.util
import json
import math
import pathlib
import sys
import tempfile

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_tiny_fixture import tiny_state_dict  # noqa: E402
from make_tokenizer_fixture import build_tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIX = ROOT / "test" / "fixtures"
CHUNK = 75


def load_prompt_parser(path):
    spec = importlib.util.spec_from_file_location("prompt_parser", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["modules"] = type(sys)("modules")  # prompt_parser imports nothing else it needs here
    spec.loader.exec_module(mod)
    return mod


class Embedding:
    def __init__(self, name, vec):
        self.name, self.vec, self.vectors = name, vec, vec.shape[0]


class Reference:
    """A1111's FrozenCLIPEmbedderWithCustomWords over transformers' CLIPTextModel."""

    def __init__(self, clip, tok, parser, embeddings, emphasis="Original", skip=1, comma_backtrack=20):
        self.clip, self.tok, self.parser = clip, tok, parser
        self.emphasis, self.skip, self.comma_backtrack = emphasis, skip, comma_backtrack
        self.id_start, self.id_end = tok.bos_token_id, tok.eos_token_id
        self.comma = tok.get_vocab()[",</w>"]
        # EmbeddingDatabase.ids_lookup: first token -> [(ids, embedding)], longest first
        self.lookup = {}
        for e in embeddings:
            ids = tok([e.name], truncation=False, add_special_tokens=False)["input_ids"][0]
            self.lookup.setdefault(ids[0], []).append((ids, e))
        for v in self.lookup.values():
            v.sort(key=lambda x: len(x[0]), reverse=True)

    def find(self, tokens, offset):
        for ids, e in self.lookup.get(tokens[offset], []):
            if tokens[offset:offset + len(ids)] == ids:
                return e, len(ids)
        return None, None

    def tokenize_line(self, line):
        parsed = self.parser.parse_prompt_attention(line) if self.emphasis != "None" else [[line, 1.0]]
        tokenized = self.tok([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
        chunks, chunk = [], {"tokens": [], "mults": [], "fixes": []}
        state = {"count": 0, "last_comma": -1}

        def next_chunk(is_last=False):
            nonlocal chunk
            state["count"] += len(chunk["tokens"]) if is_last else CHUNK
            add = CHUNK - len(chunk["tokens"])
            if add > 0:
                chunk["tokens"] += [self.id_end] * add
                chunk["mults"] += [1.0] * add
            chunk["tokens"] = [self.id_start] + chunk["tokens"] + [self.id_end]
            chunk["mults"] = [1.0] + chunk["mults"] + [1.0]
            state["last_comma"] = -1
            chunks.append(chunk)
            chunk = {"tokens": [], "mults": [], "fixes": []}

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            pos = 0
            while pos < len(tokens):
                token = tokens[pos]
                if token == self.comma:
                    state["last_comma"] = len(chunk["tokens"])
                elif self.comma_backtrack != 0 and len(chunk["tokens"]) == CHUNK and state["last_comma"] != -1 \
                        and len(chunk["tokens"]) - state["last_comma"] <= self.comma_backtrack:
                    at = state["last_comma"] + 1
                    rt, rm = chunk["tokens"][at:], chunk["mults"][at:]
                    chunk["tokens"], chunk["mults"] = chunk["tokens"][:at], chunk["mults"][:at]
                    next_chunk()
                    chunk["tokens"], chunk["mults"] = rt, rm
                if len(chunk["tokens"]) == CHUNK:
                    next_chunk()
                e, n = self.find(tokens, pos)
                if e is None:
                    chunk["tokens"].append(token)
                    chunk["mults"].append(weight)
                    pos += 1
                    continue
                if len(chunk["tokens"]) + e.vectors > CHUNK:
                    next_chunk()
                chunk["fixes"].append((len(chunk["tokens"]), e))
                chunk["tokens"] += [0] * e.vectors
                chunk["mults"] += [weight] * e.vectors
                pos += n
        if chunk["tokens"] or not chunks:
            next_chunk(is_last=True)
        return chunks, state["count"]

    def encode(self, tokens, fixes):
        # sd_hijack.EmbeddingsWithFixes puts each embedding's vectors at its positions; here each such
        # position gets a token id of its own past the vocabulary, whose embedding row is the vector.
        ids = torch.tensor(tokens)
        base = self.clip.embeddings.token_embedding
        rows = [base.weight]
        extra = base.weight.shape[0]
        for b, fx in enumerate(fixes):
            for offset, e in fx:
                for j in range(e.vectors):
                    ids[b, offset + 1 + j] = extra
                    rows.append(e.vec[j:j + 1].to(base.weight.dtype))
                    extra += 1
        self.clip.embeddings.token_embedding = torch.nn.Embedding.from_pretrained(torch.cat(rows))
        try:
            hidden = self.clip(input_ids=ids, output_hidden_states=True).hidden_states
        finally:
            self.clip.embeddings.token_embedding = base
        return self.clip.final_layer_norm(hidden[-self.skip])

    def forward(self, texts):
        lines = [self.tokenize_line(t) for t in texts]
        count = max(len(c) for c, _ in lines)
        empty = {"tokens": [self.id_start] + [self.id_end] * (CHUNK + 1), "mults": [1.0] * (CHUNK + 2), "fixes": []}
        zs = []
        for i in range(count):
            batch = [c[i] if i < len(c) else empty for c, _ in lines]
            z = self.encode([c["tokens"] for c in batch], [c["fixes"] for c in batch])
            if self.emphasis in ("Original", "No norm"):
                mult = torch.tensor([c["mults"] for c in batch])
                original_mean = z.mean()
                z = z * mult.reshape(mult.shape + (1,)).expand(z.shape)
                if self.emphasis == "Original":
                    z = z * (original_mean / z.mean())
            zs.append(z)
        return torch.hstack(zs), max(n for _, n in lines)


def main():
    from transformers import CLIPTextConfig, CLIPTextModel
    parser = load_prompt_parser(sys.argv[1])
    sd = tiny_state_dict()
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                                        max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")).eval()
    prefix = "cond_stage_model.transformer.text_model."
    clip.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=False)
    tok = build_tokenizer(pathlib.Path(tempfile.mkdtemp()))
    tok.model_max_length = 77  # as an SD checkpoint's tokenizer_config.json says

    g = torch.Generator().manual_seed(99)
    emb_dir = FIX / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    # Three formats: A1111 .pt (string_to_param), A1111 .safetensors (emb_params), diffusers learned_embeds.bin
    e1 = Embedding("shinycat", torch.randn(2, 32, generator=g) * 0.3)
    e2 = Embedding("darkstyle", torch.randn(3, 32, generator=g) * 0.3)
    e3 = Embedding("mytok", torch.randn(1, 32, generator=g) * 0.3)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": e1.vec}, "name": "shinycat", "step": 1000}, emb_dir / "shinycat.pt")
    save_file({"emb_params": e2.vec.contiguous()}, str(emb_dir / "darkstyle.safetensors"))
    torch.save({"<mytok>": e3.vec[0].clone()}, emb_dir / "mytok.bin")
    # older A1111 files: the vectors in a torch.nn.ParameterDict (loaded, not used in the cases below)
    legacy = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.randn(2, 32, generator=g) * 0.3)})
    torch.save({"string_to_token": {"*": 265}, "string_to_param": legacy, "name": "legacy", "step": 5}, emb_dir / "legacyparams.pt")
    embeddings = [e1, e2, e3]

    words = ("cat dog house tree river mountain sky cloud light shadow red blue green golden painting photo portrait "
             "detailed sharp soft warm cold morning evening city forest ocean").split()
    def text(n, seed, commas=True):
        r = torch.Generator().manual_seed(seed)
        out = []
        for i in range(n):
            out.append(words[int(torch.randint(len(words), (1,), generator=r))])
            if commas and i % 7 == 6:
                out[-1] += ","
        return " ".join(out)

    cases = {
        "short": ["a photo of a cat"],
        "emphasis": ["a (photo:1.3) of a ((cat)), [blurry] background, (masterpiece:0.8)"],
        "76 tokens": [text(76, 1, commas=False)],
        "150 tokens, commas": [text(150, 2)],
        "300 tokens, weights": ["(" + text(120, 3) + ":1.2), " + text(100, 4) + ", [" + text(70, 5) + "]"],
        "BREAK at chunk edge": [text(75, 6, commas=False) + " BREAK " + text(10, 7) + " BREAK BREAK end"],
        "embedding at chunk edge": [text(74, 8, commas=False) + " shinycat " + text(5, 9)],
        "embeddings, weighted": ["a (darkstyle:1.4) painting of shinycat, mytok, " + text(90, 10)],
        "batch of two lengths": ["a cat", text(100, 11)],
        "empty": [""],
        "brackets as text (none)": ["a (cat:1.5) [dog]"],
    }
    out, meta = {}, {"cases": {}}
    for name, texts in cases.items():
        for emphasis in (["None"] if "none" in name else ["Original", "No norm", "Ignore"]):
            for skip in ([1, 2] if emphasis == "Original" else [1]):
                ref = Reference(clip, tok, parser, embeddings, emphasis=emphasis, skip=skip)
                with torch.no_grad():
                    z, count = ref.forward(texts)
                key = f"{name}|{emphasis}|{skip}"
                out[key] = z.contiguous()
                meta["cases"][key] = {"texts": texts, "emphasis": emphasis, "clipSkip": skip, "tokenCount": count}

    # diffusers' own path for clip skip and a textual inversion (short prompt: one chunk, no weights)
    sys.path.insert(0, str(ROOT / "scripts"))
    from diffusers import StableDiffusionPipeline  # noqa: E402
    from diffusers.loaders import TextualInversionLoaderMixin  # noqa: F401,E402
    # diffusers reads text_encoder.text_model (transformers 4 nesting); transformers 5 flattened it.
    object.__setattr__(clip, "text_model", clip)
    pipe = StableDiffusionPipeline(vae=None, text_encoder=clip, tokenizer=tok, unet=None, scheduler=None, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    with torch.no_grad():
        for skip in (None, 1):
            pe, _ = pipe.encode_prompt("a photo of a cat", "cpu", 1, False, clip_skip=skip)
            out[f"diffusers.clip_skip.{skip}"] = pe.contiguous()
        pipe.load_textual_inversion(str(emb_dir / "darkstyle.safetensors"), token="darkstyle")
        pe, _ = pipe.encode_prompt("a painting in darkstyle of a house", "cpu", 1, False)
        out["diffusers.textual_inversion"] = pe.contiguous()
    save_file(out, str(FIX / "conditioning-reference.safetensors"))
    (FIX / "conditioning-reference.json").write_text(json.dumps(meta, indent=1))
    print("wrote", len(out), "entries")


if __name__ == "__main__":
    main()
