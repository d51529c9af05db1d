#!/usr/bin/env python3
"""Reference data for test/lora.test.ts, written to test/fixtures/lora/.

1. The maths (tiny checkpoint: test/tiny.ts' recipe over tiny-manifest.json, seed 1234). Small random
   LoHa, LoKr and LoCon-with-Tucker files, and the weights they must give, computed here with torch from
   the LyCORIS definitions (A1111's extensions-builtin/Lora implements the same):
     LoRA   dW = up @ down (conv: over the flattened kernel); with lora_mid: sum_ij up[o,i] mid[i,j,k,l] down[j,c]
     LoHa   dW = (w1a @ w1b) * (w2a @ w2b); with hada_t1/t2, each side is the Tucker rebuild
            sum_ij wa[i,o] t[i,j,k,l] wb[j,c]
     LoKr   dW = kron(w1, w2); w1 = lokr_w1 or w1a @ w1b; w2 = lokr_w2, w2a @ w2b, or Tucker with lokr_t2
     W = W0 + multiplier * alpha / rank * dW   (rank: rows of down / hada_w1_b / lokr_w2_b or lokr_w1_b;
                                                no alpha, or a LoKr without a low-rank factor: scale 1)
   The layers are named in kohya's diffusers spelling; the LDM parameter each lands on comes from
   diffusers' own LDM -> diffusers conversion (convert_ldm_unet_checkpoint), and tiny-names.json lists
   that conversion for the Linear/Conv layers of the tiny UNet (inside transformer blocks, one per block).

2. Parity with diffusers (the random full-size SD 1.5 checkpoint, scripts/make_random_sd15.py). Two LoRA
   files drawn from seeds, by the recipe test/lora-files.ts repeats (it writes the same files; the
   fingerprints below prove it):
     kohya: LoCon on every Linear and Conv layer of the UNet and the text encoder's encoder, names in
            kohya's diffusers spelling, rank 4, alpha 2, fp16; per layer in sd15_manifest.json order:
            down = randn([4, in(, k, k)]) / sqrt(fan_in), up = randn([out, 4(, 1, 1)]) * 0.25
     peft:  diffusers/PEFT names, the UNet's attention projections and the text encoder's self-attention,
            rank 8, no alpha, fp32: lora_A = randn([8, in]) / sqrt(in), lora_B = randn([out, 8]) * 0.125
   loaded into StableDiffusionPipeline.from_single_file with load_lora_weights and weighted with
   set_adapters (kohya 0.8; peft 1.0; both: 0.5 and 0.7). Reference: the text encoder's output (first 4
   positions of "a photo of a cat"), one UNet output, and (kohya, peft) the final latents of a 64x64,
   8-step euler generation (guidance 7.5, seed 42, negative prompt "blurry, low quality").

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_lora_fixture.py [WEIGHTS_DIR]
WEIGHTS_DIR holds sd15-random-1234.safetensors (default .cache/weights). Needs torch, safetensors,
transformers, peft.
"""
import hashlib
import json
import math
import pathlib
import sys
import tempfile

import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIX = ROOT / "test" / "fixtures"
OUT = FIX / "lora"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

UNET = "model.diffusion_model."
CLIP = "cond_stage_model.transformer.text_model."
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[32, 64],
                 down_block_types=["CrossAttnDownBlock2D"] * 2, up_block_types=["CrossAttnUpBlock2D"] * 2,
                 cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                 cross_attention_dim=768, attention_head_dim=8)
PROMPT, NEGATIVE = "a photo of a cat", "blurry, low quality"


def diffusers_names(manifest: dict, unet_cfg: dict) -> dict:
    """LDM UNet module path -> diffusers module path, by diffusers' own checkpoint conversion."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    marks = {k: torch.tensor([float(i)]) for i, k in enumerate(manifest) if k.startswith(UNET)}
    converted = convert_ldm_unet_checkpoint(marks, unet_cfg)
    by_id = {id(v): k for k, v in converted.items()}
    out = {}
    for k, v in marks.items():
        if k.endswith(".weight") and len(manifest[k]) in (2, 4):
            out[k[len(UNET):-len(".weight")]] = by_id[id(v)][: -len(".weight")]
    return out


def layers(manifest: dict, unet_cfg: dict):
    """(component, LDM parameter key, diffusers module path, shape) of every Linear/Conv layer of the UNet
    and of the text encoder's encoder, in manifest order."""
    names = diffusers_names(manifest, unet_cfg)
    for key, shape in manifest.items():
        if not key.endswith(".weight") or len(shape) not in (2, 4):
            continue
        if key.startswith(UNET):
            yield "unet", key, names[key[len(UNET):-len(".weight")]], shape
        elif key.startswith(CLIP + "encoder."):
            yield "te", key, "text_model." + key[len(CLIP):-len(".weight")], shape


def fingerprint(sd: dict) -> str:
    """sha256 over the sorted keys and their values as float32 bytes: the same LoRA whatever wrote the file."""
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode() + b"\0")
        h.update(sd[k].float().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- 1. the maths, on the tiny checkpoint ------------------------------------------------------------

def tucker(t, a, b):
    # LyCORIS make_weight_cp: a [r, out], b [r, in]
    return torch.einsum("ijkl,jr,ip->prkl", t, b, a)


def lora_delta(w):
    up, down = w["lora_up.weight"].float(), w["lora_down.weight"].float()
    if "lora_mid.weight" in w:
        return torch.einsum("nmkl,in,mj->ijkl", w["lora_mid.weight"].float(), up.flatten(1), down.flatten(1)), down.shape[0]
    return up.flatten(1) @ down.flatten(1), down.shape[0]


def loha_delta(w):
    w = {k: v.float() for k, v in w.items()}
    def side(n):
        a, b, t = w[f"hada_w{n}_a"], w[f"hada_w{n}_b"], w.get(f"hada_t{n}")
        return tucker(t, a, b) if t is not None else a @ b.flatten(1)
    p1, p2 = side(1), side(2)
    return p1 * p2.reshape(p1.shape), w["hada_w1_b"].shape[0]


def lokr_delta(w):
    w = {k: v.float() for k, v in w.items()}
    w1 = w["lokr_w1"] if "lokr_w1" in w else w["lokr_w1_a"] @ w["lokr_w1_b"]
    if "lokr_w2" in w:
        w2 = w["lokr_w2"]
    elif "lokr_t2" in w:
        w2 = tucker(w["lokr_t2"], w["lokr_w2_a"], w["lokr_w2_b"])
    else:
        w2 = w["lokr_w2_a"] @ w["lokr_w2_b"].flatten(1)
    rank = w["lokr_w2_b"].shape[0] if "lokr_w2_b" in w else w["lokr_w1_b"].shape[0] if "lokr_w1_b" in w else None
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    return torch.kron(w1, w2.contiguous()), rank


def tiny_files(g):
    """{file: (dtype, multiplier, {kohya module: {part: tensor}})}: each module on a small layer."""
    r = lambda *shape: torch.randn(shape, generator=g) * 0.3  # noqa: E731
    attn = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    return {
        "tiny-loha": (torch.float16, 0.7, {
            attn: dict(hada_w1_a=r(32, 4), hada_w1_b=r(4, 32), hada_w2_a=r(32, 4), hada_w2_b=r(4, 32), alpha=torch.tensor(3.0)),
            # Tucker form: a [r, out], b [r, in], t [r, r, k, k]
            "lora_unet_conv_in": dict(hada_w1_a=r(2, 32), hada_w1_b=r(2, 4), hada_t1=r(2, 2, 3, 3),
                                      hada_w2_a=r(2, 32), hada_w2_b=r(2, 4), hada_t2=r(2, 2, 3, 3), alpha=torch.tensor(1.0)),
            # conv without Tucker: b over the flattened kernel
            "lora_unet_conv_out": dict(hada_w1_a=r(4, 3), hada_w1_b=r(3, 32 * 9), hada_w2_a=r(4, 3), hada_w2_b=r(3, 32 * 9),
                                       alpha=torch.tensor(6.0)),
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj": dict(hada_w1_a=r(32, 2), hada_w1_b=r(2, 32),
                                                                         hada_w2_a=r(32, 2), hada_w2_b=r(2, 32)),
        }),
        "tiny-lokr": (torch.bfloat16, 1.3, {
            # w1 whole [4, 2], w2 low rank [16, 2] @ [2, 16] -> [64, 32]
            "lora_unet_down_blocks_1_attentions_1_transformer_blocks_0_attn2_to_k": dict(
                lokr_w1=r(4, 2), lokr_w2_a=r(16, 2), lokr_w2_b=r(2, 16), alpha=torch.tensor(1.0)),
            # conv with a Tucker w2: [4, 2, 1, 1] (x) [8, 2, 3, 3] -> [32, 4, 3, 3]
            "lora_unet_conv_in": dict(lokr_w1=r(4, 2), lokr_t2=r(3, 3, 3, 3), lokr_w2_a=r(3, 8), lokr_w2_b=r(3, 2),
                                      alpha=torch.tensor(2.0)),
            # w1 low rank, w2 whole: rank from lokr_w1_b
            "lora_te_text_model_encoder_layers_1_mlp_fc1": dict(lokr_w1_a=r(2, 1), lokr_w1_b=r(1, 2), lokr_w2=r(32, 16),
                                                                alpha=torch.tensor(0.5)),
            # both whole: no rank, alpha ignored (scale 1)
            "lora_te_text_model_encoder_layers_1_self_attn_out_proj": dict(lokr_w1=r(2, 2), lokr_w2=r(16, 16),
                                                                           alpha=torch.tensor(9.0)),
        }),
        "tiny-locon-tucker": (torch.float32, -0.5, {
            # LDM spelling; LoCon with a Tucker mid on conv_out (out.2)
            "lora_unet_out_2": dict(**{"lora_down.weight": r(3, 32, 1, 1), "lora_mid.weight": r(3, 3, 3, 3),
                                       "lora_up.weight": r(4, 3, 1, 1)}, alpha=torch.tensor(1.5)),
            # plain LoRA on a 1x1 conv (proj_in), no alpha
            "lora_unet_up_blocks_1_attentions_2_proj_in": {"lora_down.weight": r(2, 32, 1, 1), "lora_up.weight": r(32, 2, 1, 1)},
        }),
    }


def tiny_fixture():
    from make_tiny_fixture import tiny_state_dict
    manifest = json.loads((FIX / "tiny-manifest.json").read_text())
    names = diffusers_names(manifest, TINY_UNET)
    # Inside a transformer block both spellings agree; one module per block is enough there.
    pairs = sorted(((l, d) for l, d in names.items() if "transformer_blocks" not in d or d.endswith("attn2.to_k")), key=lambda kv: kv[1])
    (OUT / "tiny-names.json").write_text("[\n" + ",\n".join(json.dumps(list(p)) for p in pairs) + "\n]\n")
    # kohya's flattened names (either spelling) -> the LDM parameter, from the manifest and that conversion
    flat = {}
    for key, shape in manifest.items():
        if key.endswith(".weight") and key.startswith(CLIP):
            flat["lora_te_text_model_" + key[len(CLIP):-len(".weight")].replace(".", "_")] = key
        elif key.endswith(".weight") and key.startswith(UNET):
            module = key[len(UNET):-len(".weight")]
            flat["lora_unet_" + module.replace(".", "_")] = key
            if module in names:
                flat["lora_unet_" + names[module].replace(".", "_")] = key

    base = tiny_state_dict()
    g = torch.Generator().manual_seed(77)
    expected = {}
    for file, (dtype, multiplier, modules) in tiny_files(g).items():
        sd = {}
        for module, parts in modules.items():
            parts = {k: v.to(dtype) if k != "alpha" else v for k, v in parts.items()}
            for part, t in parts.items():
                sd[f"{module}.{part}"] = t.contiguous()
            key = flat[module]
            kind = lora_delta if "lora_up.weight" in parts else loha_delta if "hada_w1_a" in parts else lokr_delta
            delta, rank = kind(parts)
            scale = parts["alpha"].item() / rank if "alpha" in parts and rank else 1.0
            w0 = base[key]
            expected[f"{file}/{key}"] = (w0 + delta.reshape(w0.shape) * (multiplier * scale)).contiguous()
        save_file(sd, str(OUT / f"{file}.safetensors"), metadata={"multiplier": str(multiplier)})
    save_file(expected, str(OUT / "tiny-expected.safetensors"))


# -- 2. parity with diffusers, on the random SD 1.5 checkpoint -------------------------------------------

def kohya_lora(targets, rank=4, seed=4242):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for component, _, module, shape in targets:
        name = ("lora_unet_" if component == "unet" else "lora_te_") + module.replace(".", "_")
        fan_in = math.prod(shape[1:])
        down = torch.randn([rank, *shape[1:]], generator=g) / math.sqrt(fan_in)
        up = torch.randn([shape[0], rank] + [1] * (len(shape) - 2), generator=g) * 0.25
        sd[name + ".lora_down.weight"] = down.half()
        sd[name + ".lora_up.weight"] = up.half()
        sd[name + ".alpha"] = torch.tensor(rank / 2)
    return sd


def peft_lora(targets, rank=8, seed=4343):
    import re
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for component, _, module, shape in targets:
        if not re.search(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$|self_attn\.(q|k|v|out)_proj$", module):
            continue
        name = ("unet." if component == "unet" else "text_encoder.") + module
        sd[name + ".lora_A.weight"] = torch.randn([rank, shape[1]], generator=g) / math.sqrt(shape[1])
        sd[name + ".lora_B.weight"] = torch.randn([shape[0], rank], generator=g) * 0.125
    return sd


def sd15_fixture(weights_dir: pathlib.Path):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging
    from diffusers_side import write_configs
    logging.set_verbosity_error()
    manifest = json.loads((ROOT / "scripts" / "sd15_manifest.json").read_text())
    targets = list(layers(manifest, SD15_UNET))
    loras = {"kohya": kohya_lora(targets), "peft": peft_lora(targets)}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sd15-lora-"))
    for name, sd in loras.items():
        save_file(sd, str(tmp / f"{name}.safetensors"))
    cfg = tmp / "config"
    (cfg / "tokenizer").mkdir(parents=True)
    write_configs(cfg)
    pipe = StableDiffusionPipeline.from_single_file(str(weights_dir / "sd15-random-1234.safetensors"), config=str(cfg),
                                                    local_files_only=True, safety_checker=None, requires_safety_checker=False,
                                                    torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for name in loras:
        # load_lora_weights, with one fix: transformers 5's CLIPTextModel names its modules without the
        # "text_model." that LoRA files (and diffusers' conversion) put in front.
        state_dict, alphas = pipe.lora_state_dict(str(tmp / f"{name}.safetensors"))
        fix = lambda d: {k.replace("text_encoder.text_model.", "text_encoder."): v for k, v in d.items()}  # noqa: E731
        state_dict, alphas = fix(state_dict), fix(alphas) if alphas else alphas
        pipe.load_lora_into_unet(state_dict, network_alphas=alphas, unet=pipe.unet, adapter_name=name, _pipeline=pipe)
        pipe.load_lora_into_text_encoder(state_dict, network_alphas=alphas, text_encoder=pipe.text_encoder, adapter_name=name,
                                         _pipeline=pipe)
        te_layers = sum(1 for n, _ in pipe.text_encoder.named_modules() if n.endswith("lora_A"))
        assert te_layers > 0, f"{name}: no LoRA layer in the text encoder"
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(7)
    x, ctx = torch.randn([1, 4, 8, 8], generator=g), torch.randn([1, 77, 768], generator=g)
    out = {"unet.x": x, "unet.ctx": ctx}
    cases = {"kohya": (["kohya"], [0.8]), "peft": (["peft"], [1.0]), "both": (["kohya", "peft"], [0.5, 0.7])}
    with torch.no_grad():
        for case, (names, weights) in cases.items():
            pipe.set_adapters(names, adapter_weights=weights)
            out[f"{case}.te"] = pipe.text_encoder(ids).last_hidden_state[:, :4]
            out[f"{case}.unet"] = pipe.unet(x, torch.tensor([500.0]), encoder_hidden_states=ctx).sample
            if case != "both":  # a generation costs ~25 s on the sdtorch side; two of them cover the pipeline
                out[f"{case}.latents"] = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=8, guidance_scale=7.5, width=64,
                                              height=64, generator=torch.Generator().manual_seed(42), output_type="latent").images
    del out["unet.ctx"]  # the test draws it again from the seed (300 KB)
    meta = {f"{name}.fingerprint": fingerprint(sd) for name, sd in loras.items()}
    meta["cases"] = json.dumps(cases)
    save_file({k: v.contiguous() for k, v in out.items()}, str(OUT / "sd15-reference.safetensors"), metadata=meta)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tiny_fixture()
    print("wrote", OUT / "tiny-*.safetensors", OUT / "tiny-names.json")
    weights_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".cache" / "weights"
    sd15_fixture(weights_dir)
    print("wrote", OUT / "sd15-reference.safetensors")


if __name__ == "__main__":
    main()
