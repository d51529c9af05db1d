#!/usr/bin/env python3
"""Reference outputs of diffusers for SDXL: the full-size random base and refiner files, and the tiny presets.

Everything is computed in float32 on the CPU with diffusers' StableDiffusionXLPipeline and
StableDiffusionXLImg2ImgPipeline.

Full size (test/fixtures/sdxl-reference.{json,safetensors}): the fp16 files of make_random_checkpoints.py
(--only sdxl, --only sdxl-refiner), each loaded by Pipeline.from_single_file(file, config=<typed-in folder of
the real repo's configs, diffusers_configs.py>, local_files_only=True, torch_dtype=torch.float16) - the
file's own precision, so checkpoint and networks fit in memory together - then checked (diffusers names the
model type xl_base / xl_refiner; every tensor of every network equals the file's tensor through diffusers'
own converters, nothing missing, nothing left over but what diffusers ignores on purpose), then each network
is cast to float32 in place. The base and the refiner run in separate processes (--part base, --part
refiner; each holds one model, ~14 GB in fp32), writing WORK/<part>.{json,safetensors}; --part assemble
writes the fixture. The refiner part reads the base part's hand-off latents.

Tiny (test/fixtures/tiny-sdxl-reference.{json,safetensors}): the recipe (make_random_sd15.draw, seed 1234)
over test/fixtures/tiny-sdxl-manifest.json / tiny-sdxl-refiner-manifest.json; the diffusers/transformers
twins are filled through diffusers' LDM -> diffusers conversion (UNet, VAE) and the manifest's
transformers names (text encoders, prefixes stripped). Also writes the tiny LoRA and the textual
inversion file it uses, and the full-size LoRA (test/fixtures/lora/, test/fixtures/embeddings/).

What each entry and case is, in diffusers' terms, is in the JSON files (entries, cases, rng, checks,
made_with).

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_sdxl_reference.py WEIGHTS_DIR --part P [--work DIR]
  P: tiny | base | refiner | assemble | all (base, refiner, assemble as three subprocesses, then tiny)
  WEIGHTS_DIR holds sdxl-base-random-1234.fp16.safetensors and sdxl-refiner-random-1234.fp16.safetensors.
"""
import argparse
import gc
import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from diffusers_configs import OPEN_CLIP_BIGG, CLIP_L, SDXL_SCHEDULER, write_config_folder  # noqa: E402
from make_random_checkpoints import REFINER_BIGG, SDXL_BIGG, TINY_SDXL_REFINER_UNET, TINY_SDXL_UNET  # noqa: E402
from make_random_sd15 import draw  # noqa: E402
from make_sd2_reference import quiet  # noqa: E402

FIX = HERE.parent / "test" / "fixtures"
FILES = {"base": "sdxl-base-random-1234.fp16.safetensors", "refiner": "sdxl-refiner-random-1234.fp16.safetensors"}
MANIFESTS = {"base": "sdxl_manifest.json", "refiner": "sdxl_refiner_manifest.json"}
PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon, highly detailed",
           "a watercolor painting of a lighthouse at dusk"]
PROMPT, NEGATIVE, CFG = PROMPTS[0], "blurry, low quality", 6.0
SAMPLERS = {"euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
            "dpmpp_2m": "DPMSolverMultistepScheduler"}
MICRO = dict(original_size=(256, 192), crops_coords_top_left=(16, 8), target_size=(160, 96),
             negative_original_size=(512, 512), negative_crops_coords_top_left=(0, 4), negative_target_size=(96, 128))
TI_TOKEN, TI_PROMPT = "tinyxlstyle", "a painting in tinyxlstyle of a house"
LORA_ALPHA, LORA_RANK = 2.0, 4
TI_EOS = ("eos_token_id 49407 in text_encoder's and text_encoder_2's configs (this case only; the others keep CLIP_L's 2), "
          "because with 2 transformers pools text_embeds at argmax(ids), which is the added token 49409 here, while "
          "with 49407 it pools at the first <|endoftext|>, as A1111 and sdtorch do")


def cases(size: int, img2img_size: int) -> list:
    """The pipeline runs (full size: size 128, img2img 64; tiny: both 64). Every case: prompt PROMPT, guidance CFG,
    output_type 'latent'. 'negative': the negative prompt (None: not passed)."""
    wh = dict(width=size, height=size)
    return [
        dict(key="txt2img.euler", pipeline="txt2img", sampler="euler", steps=5, seed=42, negative=NEGATIVE, **wh),
        dict(key="txt2img.euler_a.zero_negative", pipeline="txt2img", sampler="euler_a", steps=5, seed=43, negative=None, **wh),
        dict(key="txt2img.dpmpp_2m.microcond", pipeline="txt2img", sampler="dpmpp_2m", steps=5, seed=44, negative=NEGATIVE,
             micro=MICRO, **wh),
        dict(key="img2img.euler.s060", pipeline="img2img", sampler="euler", steps=5, seed=45, negative=NEGATIVE,
             image="img2img-init.png", strength=0.6, width=img2img_size, height=img2img_size),
        dict(key="handoff.base", pipeline="txt2img", sampler="euler", steps=6, seed=46, negative=NEGATIVE, denoising_end=0.8, **wh),
        dict(key="handoff.refined", pipeline="refiner", sampler="euler", steps=6, seed=47, negative=NEGATIVE, denoising_start=0.8,
             image_from="handoff.base", **wh),
        dict(key="lora.txt2img.euler", pipeline="txt2img", sampler="euler", steps=5, seed=42, negative=NEGATIVE, lora=1.0,
             same_as="txt2img.euler", **wh),
    ]


RNG_NOTES = {
    "generator": "one torch.Generator().manual_seed(seed) on the CPU serves every draw of a run, in this order",
    "txt2img": "noise = randn([1,4,h,w]) * scheduler.init_noise_sigma; then the sampler's own draws (euler_a: one "
               "randn([1,4,h,w]) per step, after the UNet call)",
    "img2img": "StableDiffusionXLImg2ImgPipeline.prepare_latents: image (PNG as is: RGB / 255 * 2 - 1, no resize when the "
               "size is already a multiple of the VAE factor) -> vae.encode(image).latent_dist.sample(generator) = mean + "
               "std * randn([1,4,h,w]), times scaling_factor 0.13025 (no latents_mean / latents_std); then noise = "
               "randn([1,4,h,w]); start = scheduler.add_noise(image_latents, noise, timesteps[0]) with the timesteps "
               "cut by strength: set_timesteps(steps), init = min(int(steps * strength), steps), t_start = steps - init, "
               "timesteps = timesteps[t_start:]; <case>.start holds it",
    "refiner_handoff": "base: StableDiffusionXLPipeline(denoising_end=0.8, output_type='latent'): it keeps the timesteps "
                       "t >= round(1000 - 0.8 * 1000) = 200 of set_timesteps(steps) and returns the latents as they are "
                       "after the last kept step (no decode, no scaling). refiner: StableDiffusionXLImg2ImgPipeline("
                       "image=those latents, denoising_start=0.8): 4-channel image = latents as is, no VAE, NO noise drawn "
                       "(add_noise=False), timesteps t < 200 of set_timesteps(steps); 'strength' is ignored; the Euler "
                       "scheduler continues at the sigma of the first kept timestep (set_begin_index)",
    "zero_negative": "negative_prompt None with force_zeros_for_empty_prompt (base: true): negative context and negative "
                     "pooled embedding are zeros (not the encoding of an empty prompt)",
}
CONDITIONING_NOTES = {
    "context": "per prompt: cat([text_encoder(ids_1, output_hidden_states=True).hidden_states[-2], "
               "text_encoder_2(ids_2, output_hidden_states=True).hidden_states[-2]], dim=-1): [77, 768 + 1280]; the "
               "penultimate layer's output, WITHOUT final_layer_norm; refiner: text_encoder_2's alone [77, 1280]",
    "pooled": "text_encoder_2(ids_2).text_embeds: final_layer_norm(last layer)[eos position] @ text_projection "
              "(transformers' Linear, weight = OpenCLIP's text_projection TRANSPOSED: diffusers' conversion stores "
              "text_projection.T); eos position = argmax(ids_2) (the first 49407; tokenizer_2 pads with 0)",
    "time_ids": "base: original_size (h, w) + crops_coords_top_left (top, left) + target_size (h, w), 6 numbers; "
                "refiner (requires_aesthetics_score): original_size + crops_coords_top_left + (aesthetic_score,), 5 "
                "numbers (negative: negative_aesthetic_score); defaults original = target = (height, width), crop (0, 0), "
                "scores 6.0 / 2.5; the negative row copies the positive unless negative_* are given. "
                "cases.<key>.add_time_ids_calls: what _get_add_time_ids returned, call by call (txt2img: the positive row, "
                "then the negative row when negative_original_size etc. are given; img2img: [positive, negative])",
    "added_cond": "UNet: add_embedding(cat([text_embeds, flatten(sinusoid_256(time_ids))])) added to the time "
                  "embedding; sinusoid as the timestep's (flip_sin_to_cos, shift 0): [cos | sin] per number; the tiny "
                  "presets: 8 channels per number",
    "cfg": "batch [negative, positive]; noise = uncond + guidance_scale * (cond - uncond); guidance_rescale 0",
}


def finite(name, t):
    assert torch.isfinite(t).all(), name
    return t


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


# -- loading and checks (full size) ---------------------------------------------------------------------------

class Checks:
    """diffusers reads each file as intended: the model type, and every tensor of every network."""

    def __init__(self):
        self.log = {}

    def same(self, name, component, module, converted, note=""):
        state = {k: v for k, v in module.state_dict().items() if "position_ids" not in k}
        converted = {k.removeprefix("text_model.") if not hasattr(module, "text_model") else k: v
                     for k, v in converted.items() if "position_ids" not in k}
        assert set(state) == set(converted), (name, component, sorted(set(state) ^ set(converted))[:10])
        for k, v in converted.items():
            assert state[k].shape == v.shape and torch.equal(state[k], v.to(state[k].dtype)), (name, component, k)
        self.log.setdefault(name, {})[component] = f"{len(converted)} tensors, all equal to the file's{note}"

    def pipeline(self, name, pipe, ckpt):
        from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                         convert_ldm_vae_checkpoint, convert_open_clip_checkpoint,
                                                         infer_diffusers_model_type)

        kind = infer_diffusers_model_type(ckpt)
        assert kind == {"base": "xl_base", "refiner": "xl_refiner"}[name], kind
        self.log.setdefault(name, {})["infer_diffusers_model_type"] = kind
        self.same(name, "unet", pipe.unet, convert_ldm_unet_checkpoint(ckpt, dict(pipe.unet.config)))
        self.same(name, "vae", pipe.vae, convert_ldm_vae_checkpoint(ckpt, dict(pipe.vae.config)))
        prefix = SDXL_BIGG if name == "base" else REFINER_BIGG
        left = sorted(k for k in ckpt if k.startswith(prefix) and not k.startswith(prefix + "transformer.")
                      and k[len(prefix):] not in ("positional_embedding", "text_projection", "token_embedding.weight",
                                                   "ln_final.weight", "ln_final.bias"))
        assert left == [prefix + "logit_scale"], left
        self.same(name, "text_encoder_2", pipe.text_encoder_2, convert_open_clip_checkpoint(pipe.text_encoder_2, ckpt, prefix=prefix),
                  f"; {prefix}logit_scale not used (CLIP's contrastive temperature); in_proj split into q, k, v; "
                  "text_projection transposed")
        if name == "base":
            conv = convert_ldm_clip_checkpoint(ckpt)
            self.same(name, "text_encoder", pipe.text_encoder, conv,
                      "; embeddings.position_ids (int64 arange(77)) is a buffer, not compared")
        counts = {}
        for k in ckpt:
            p = ".".join(k.split(".")[:3]) if k.startswith("conditioner") else k.split(".")[0]
            counts[p] = counts.get(p, 0) + 1
        self.log[name]["file_tensors"] = counts


def load_full(name, weights, folders, checks, timings):
    """from_single_file in fp16 (the file's precision), the checks, then every network cast to fp32 in place."""
    import diffusers.loaders.single_file as single_file
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    start = time.time()
    cls = StableDiffusionXLPipeline if name == "base" else StableDiffusionXLImg2ImgPipeline
    path = weights / FILES[name]
    # the checks reuse the checkpoint from_single_file read (diffusers' converters only read it): one 7 GB copy, not two
    kept, load = [], single_file.load_single_file_checkpoint
    single_file.load_single_file_checkpoint = lambda *a, **k: kept.append(load(*a, **k)) or kept[-1]
    try:
        pipe = cls.from_single_file(str(path), config=str(folders["sdxl" if name == "base" else "sdxl-refiner"]),
                                    local_files_only=True, torch_dtype=torch.float16)
    finally:
        single_file.load_single_file_checkpoint = load
    timings[f"{name}: from_single_file (fp16)"] = round(time.time() - start, 1)
    start = time.time()
    assert len(kept) == 1 and len(kept[0]) == len(json.loads((HERE / MANIFESTS[name]).read_text())) + (name == "base")
    checks.pipeline(name, pipe, kept.pop())
    gc.collect()
    timings[f"{name}: checks"] = round(time.time() - start, 1)
    start = time.time()
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, part, None)
        if module is not None:
            module.to(torch.float32)
            gc.collect()
    timings[f"{name}: cast to fp32"] = round(time.time() - start, 1)
    assert pipe.unet.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    if name == "base":
        assert pipe.config.force_zeros_for_empty_prompt and pipe.tokenizer.pad_token_id == 49407
    else:
        assert pipe.config.requires_aesthetics_score and not pipe.config.force_zeros_for_empty_prompt
    assert pipe.tokenizer_2.pad_token_id == 0
    return quiet(pipe)


# -- tiny twins ------------------------------------------------------------------------------------------------

TINY_CLIP_L = {**CLIP_L, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
               "projection_dim": 32}
TINY_CLIP_G = {**OPEN_CLIP_BIGG, "hidden_size": 40, "intermediate_size": 80, "num_attention_heads": 2, "num_hidden_layers": 2,
               "projection_dim": 40}
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=[32, 64],
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=32,
                sample_size=64, scaling_factor=0.13025, force_upcast=True)


def clip_from(sd, prefix, cfg, with_projection):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not hasattr(model, "text_model"):  # flattened CLIPTextModel: keys start below text_model
        part = {k.removeprefix("text_model."): v for k, v in part.items()}
    missing, unexpected = model.load_state_dict(part, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return model


def tiny_components(refiner=False, seed=1234, eos_token_id=None):
    """The tiny SDXL (refiner) preset's diffusers/transformers twins (float32), filled with the recipe's weights;
    eos_token_id: replaces the text encoders' config value (CLIP_L's 2: transformers pools at argmax(ids))."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    manifest = json.loads((FIX / ("tiny-sdxl-refiner-manifest.json" if refiner else "tiny-sdxl-manifest.json")).read_text())
    sd = draw(manifest, seed)
    unet_cfg = TINY_SDXL_REFINER_UNET if refiner else TINY_SDXL_UNET
    eos = {} if eos_token_id is None else {"eos_token_id": eos_token_id}
    unet = UNet2DConditionModel(**unet_cfg).eval()
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, unet_cfg), strict=True)
    vae = AutoencoderKL(**TINY_VAE).eval()
    vae.load_state_dict(convert_ldm_vae_checkpoint(sd, TINY_VAE), strict=True)
    if refiner:
        return dict(unet=unet, vae=vae, text_encoder=None,
                    text_encoder_2=clip_from(sd, "conditioner.embedders.0.transformer.", {**TINY_CLIP_G, **eos}, True))
    return dict(unet=unet, vae=vae, text_encoder=clip_from(sd, "conditioner.embedders.0.transformer.", {**TINY_CLIP_L, **eos}, False),
                text_encoder_2=clip_from(sd, "conditioner.embedders.1.transformer.", {**TINY_CLIP_G, **eos}, True))


def tiny_pipelines(folder):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    tok2 = CLIPTokenizer.from_pretrained(str(folder / "tokenizer_2"))
    sched = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)
    base = quiet(StableDiffusionXLPipeline(**tiny_components(), tokenizer=tok, tokenizer_2=tok2, scheduler=sched,
                                           force_zeros_for_empty_prompt=True))
    refiner = quiet(StableDiffusionXLImg2ImgPipeline(**tiny_components(refiner=True), tokenizer=None, tokenizer_2=tok2,
                                                     scheduler=sched, requires_aesthetics_score=True,
                                                     force_zeros_for_empty_prompt=False))
    return base, refiner


# -- LoRA and textual inversion files --------------------------------------------------------------------------

def lora_modules(tiny: bool) -> list:
    """(kohya name, in, out) of the LoRA's modules: sgm UNet names (kohya's spelling of model.diffusion_model.*),
    te1 = text_encoder (CLIP ViT-L / tiny CLIP 0), te2 = text_encoder_2 (bigG / tiny CLIP 1). A text encoder's
    attention always gets all four projections, as kohya's files have them: diffusers' kohya conversion names
    self_attn LoRAs in its old format (to_q_lora) and mlp ones in the new (lora_linear_layer), then infers ONE
    format per encoder from the presence of 'to_out_lora'; an encoder with q_proj but no out_proj LoRA would
    silently lose its attention LoRAs (not loaded into the model). Full size: te1 layer 10 is the last one the
    SDXL context sees (hidden_states[-2]); te2 layer 31 only reaches the pooled text_embeds."""

    def attention(prefix, width):
        return [(f"{prefix}_self_attn_{p}", width, width) for p in ("q_proj", "k_proj", "v_proj", "out_proj")]

    if tiny:  # tiny: level 1 (64 wide) holds the attention; context 72; text encoders 32 and 40 wide, 2 layers
        c, ctx, te1, te2, mlp2 = 64, 72, 32, 40, 80
        blocks = [("input_blocks_4_1_transformer_blocks_0", c), ("middle_block_1_transformer_blocks_1", c),
                  ("output_blocks_0_1_transformer_blocks_1", c)]
        te = [*attention("lora_te1_text_model_encoder_layers_0", te1), ("lora_te1_text_model_encoder_layers_0_mlp_fc2", 64, te1),
              *attention("lora_te2_text_model_encoder_layers_0", te2), ("lora_te2_text_model_encoder_layers_1_mlp_fc1", te2, mlp2)]
        proj = ("lora_unet_input_blocks_5_1_proj_in", c, c)
    else:
        ctx = 2048
        blocks = [("input_blocks_4_1_transformer_blocks_0", 640), ("middle_block_1_transformer_blocks_3", 1280),
                  ("output_blocks_3_1_transformer_blocks_1", 640)]
        te = [*attention("lora_te1_text_model_encoder_layers_0", 768), ("lora_te1_text_model_encoder_layers_10_mlp_fc2", 3072, 768),
              ("lora_te2_text_model_encoder_layers_1_mlp_fc1", 1280, 5120), *attention("lora_te2_text_model_encoder_layers_31", 1280)]
        proj = ("lora_unet_input_blocks_5_1_proj_in", 640, 640)
    out = []
    (b0, c0), (b1, c1), (b2, c2) = blocks
    for p in ("to_q", "to_k", "to_v", "to_out_0"):
        out.append((f"lora_unet_{b0}_attn1_{p}", c0, c0))
    out += [(f"lora_unet_{b0}_attn2_to_k", ctx, c0), (f"lora_unet_{b1}_attn2_to_v", ctx, c1),
            (f"lora_unet_{b1}_attn1_to_out_0", c1, c1), (f"lora_unet_{b2}_attn1_to_q", c2, c2),
            (f"lora_unet_{b2}_ff_net_2", 4 * c2, c2), proj]
    return out + te


def write_lora(path: pathlib.Path, tiny: bool, seed: int) -> dict:
    """kohya's LoRA format, fp16: per module (lora_modules order) down = randn([4, in], g) / sqrt(in),
    up = randn([out, 4], g) * 0.25, alpha = 2 (scale alpha / rank = 0.5), g = manual_seed(seed)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, fin, fout in lora_modules(tiny):
        sd[name + ".lora_down.weight"] = (torch.randn([LORA_RANK, fin], generator=g) / math.sqrt(fin)).half()
        sd[name + ".lora_up.weight"] = (torch.randn([fout, LORA_RANK], generator=g) * 0.25).half()
        sd[name + ".alpha"] = torch.tensor(LORA_ALPHA).half()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata={"ss_network_module": "networks.lora"})  # one key: safetensors orders several randomly
    os.replace(tmp, path)
    return describe_lora(path, tiny, seed)


def describe_lora(path: pathlib.Path, tiny: bool, seed: int) -> dict:
    return dict(file=str(path.relative_to(HERE.parent)), format="kohya (lora_down / lora_up / alpha, fp16)", rank=LORA_RANK,
                alpha=LORA_ALPHA, seed=seed, modules=[m[0] for m in lora_modules(tiny)],
                recipe=" ".join(write_lora.__doc__.split()), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                bytes=path.stat().st_size)


def load_lora(pipe, path, expect):
    """pipe.load_lora_weights' steps (lora_state_dict, load_lora_into_unet, load_lora_into_text_encoder for both
    encoders), with one fix: transformers 5's CLIPTextModel names its modules without the 'text_model.' that
    diffusers' kohya conversion puts in front (CLIPTextModelWithProjection keeps it)."""
    state_dict, alphas = pipe.lora_state_dict(str(path), unet_config=pipe.unet.config)
    fix = lambda d: {("text_encoder." + k[len("text_encoder.text_model."):] if k.startswith("text_encoder.text_model.") else k): v  # noqa: E731
                     for k, v in d.items()}
    state_dict, alphas = fix(state_dict), fix(alphas) if alphas else alphas
    pipe.load_lora_into_unet(state_dict, network_alphas=alphas, unet=pipe.unet, adapter_name="sdxl", _pipeline=pipe)
    for prefix, te in (("text_encoder", pipe.text_encoder), ("text_encoder_2", pipe.text_encoder_2)):
        pipe.load_lora_into_text_encoder(state_dict, network_alphas=alphas, text_encoder=te, prefix=prefix,
                                         adapter_name="sdxl", _pipeline=pipe)
    counts = {part: sum(1 for n, _ in getattr(pipe, part).named_modules() if n.endswith("lora_A"))
              for part in ("unet", "text_encoder", "text_encoder_2")}
    assert counts == expect, (counts, expect)
    pipe.set_adapters(["sdxl"], adapter_weights=[1.0])
    return counts


def write_embedding(path: pathlib.Path, seed=5) -> dict:
    """An SDXL textual inversion as people download them: {'clip_l': [2, 32], 'clip_g': [2, 40]} (tiny widths),
    0.05 * randn, g = manual_seed(seed), clip_l drawn first; fp32."""
    g = torch.Generator().manual_seed(seed)
    sd = {"clip_l": 0.05 * torch.randn([2, 32], generator=g), "clip_g": 0.05 * torch.randn([2, 40], generator=g)}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file(sd, str(tmp))
    os.replace(tmp, path)
    return sd


# -- components -------------------------------------------------------------------------------------------------

def encoders(out, pipe, tag):
    """Token ids of PROMPTS for each tokenizer, and the text encoders' SDXL outputs."""
    with torch.no_grad():
        for i, (tok, te) in enumerate(((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))):
            if te is None:
                continue
            name = "text_encoder" if i == 0 else "text_encoder_2"
            ids = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            out[f"{tag}.{name}.ids"] = ids
            res = te(ids, output_hidden_states=True)
            out[f"{tag}.{name}.hidden_states_m2"] = finite(tag, res.hidden_states[-2])
            if i == 1:
                out[f"{tag}.{name}.text_embeds"] = finite(tag, res.text_embeds)


def unet_vae(out, pipe, tag, refiner, seed=2024):
    """UNet on stored random x with the stored SDXL conditioning of PROMPTS; VAE decode / encode on stored inputs."""
    g = torch.Generator().manual_seed(seed)
    ctx_parts = [out[f"{tag}.text_encoder_2.hidden_states_m2"]]
    if not refiner:
        ctx_parts.insert(0, out[f"{tag}.text_encoder.hidden_states_m2"])
    ctx = torch.cat(ctx_parts, -1)
    pooled = out[f"{tag}.text_encoder_2.text_embeds"]
    if refiner:
        time_ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 6.0], [768.0, 1344.0, 32.0, 16.0, 2.5]])
    else:
        time_ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], [768.0, 1344.0, 32.0, 16.0, 832.0, 1216.0]])
    with torch.no_grad():
        for name, shape, t, rows in (("unet", [1, 4, 16, 16], [981.0], [0]), ("unet2", [2, 4, 8, 12], [500.0, 1.0], [1, 2])):
            x = torch.randn(shape, generator=g)
            tt = torch.tensor(t)
            out[f"{tag}.{name}.x"], out[f"{tag}.{name}.t"] = x, tt
            out[f"{tag}.{name}.time_ids"] = time_ids[: shape[0]].clone()
            cond = dict(text_embeds=pooled[rows], time_ids=time_ids[: shape[0]])
            out[f"{tag}.{name}.out"] = finite(name, pipe.unet(x, tt, encoder_hidden_states=ctx[rows], added_cond_kwargs=cond).sample)
        f = pipe.vae_scale_factor
        image = torch.rand(1, 3, 8 * f, 8 * f, generator=g) * 2 - 1
        dist = pipe.vae.encode(image).latent_dist
        out[f"{tag}.vae.image"], out[f"{tag}.vae.mean"], out[f"{tag}.vae.logvar"] = image, dist.mean, dist.logvar
        z = torch.randn(1, 4, 8, 8, generator=g)
        out[f"{tag}.vae.z"], out[f"{tag}.vae.decoded"] = z, finite("vae", pipe.vae.decode(z).sample)


COMPONENT_ENTRIES = {
    "<tag>.text_encoder.ids / .text_encoder_2.ids": "[3,77] int64: tokenizer(PROMPTS, padding='max_length', max_length=77, "
        "truncation=True); tokenizer pads with <|endoftext|> 49407, tokenizer_2 with '!' (id 0)",
    "<tag>.text_encoder.hidden_states_m2": "[3,77,768 | tiny 32]: text_encoder(ids, output_hidden_states=True).hidden_states[-2] "
        "(the penultimate layer's output, no final_layer_norm)",
    "<tag>.text_encoder_2.hidden_states_m2 / .text_embeds": "[3,77,1280 | tiny 40] / [3,1280 | 40]: text_encoder_2 "
        "(CLIPTextModelWithProjection)(ids_2, output_hidden_states=True): .hidden_states[-2] and .text_embeds",
    "<tag>.unet.{x,t,time_ids,out}, <tag>.unet2.*": "x [1,4,16,16] t [981] / x [2,4,8,12] t [500, 1], from manual_seed(2024); "
        "out = unet(x, t, encoder_hidden_states=ctx, added_cond_kwargs={'text_embeds': pooled, 'time_ids': time_ids}).sample "
        "with ctx and pooled from the stored encoder outputs: unet uses prompt 0, unet2 prompts 1 and 2; ctx = "
        "cat([text_encoder.hidden_states_m2, text_encoder_2.hidden_states_m2], -1) (refiner: text_encoder_2's alone), "
        "pooled = text_encoder_2.text_embeds; time_ids stored ([B,6]; refiner [B,5]: the last number is the aesthetic score)",
    "<tag>.vae.{image,mean,logvar}": "image [1,3,8f,8f] (f = vae_scale_factor: 8 full size, 2 tiny) = rand * 2 - 1 (same "
        "generator, after the UNet inputs); vae.encode(image).latent_dist.mean / .logvar",
    "<tag>.vae.{z,decoded}": "z [1,4,8,8] (randn, same generator, unscaled); vae.decode(z).sample",
}


# -- pipeline runs ----------------------------------------------------------------------------------------------

def run_case(pipe, case, out, docs, kind_pipe=None):
    import diffusers

    scheduler = getattr(diffusers, SAMPLERS[case["sampler"]]).from_config(SDXL_SCHEDULER)
    pipe.scheduler = scheduler
    kwargs = dict(prompt=case.get("prompt", PROMPT), guidance_scale=CFG, num_inference_steps=case["steps"],
                  generator=torch.Generator().manual_seed(case["seed"]), output_type="latent")
    if case.get("negative") is not None:
        kwargs["negative_prompt"] = case["negative"]
    if case["pipeline"] == "txt2img":
        kwargs.update(height=case["height"], width=case["width"])
    kwargs.update(case.get("micro", {}))
    for k in ("strength", "denoising_end", "denoising_start"):
        if k in case:
            kwargs[k] = case[k]
    if "image" in case:
        image = Image.open(FIX / case["image"]).convert("RGB")
        assert image.size == (case["width"], case["height"]), "img2img runs at the PNG's own size"
        kwargs["image"] = image
    if "image_from" in case:
        kwargs["image"] = out[case["image_from"]]
    time_ids, timesteps = [], []
    orig_ids, orig_prep = pipe._get_add_time_ids, getattr(pipe, "prepare_latents")

    def ids_hook(*a, **k):
        r = orig_ids(*a, **k)
        time_ids.append([t.tolist() for t in (r if isinstance(r, tuple) else (r,))])
        return r

    def prep_hook(*a, **k):
        r = orig_prep(*a, **k)
        if case["pipeline"] != "txt2img":
            out[case["key"] + ".start"] = r.clone()
        return r

    def step_end(p, i, t, kw):
        timesteps.append(float(t))
        return kw

    pipe._get_add_time_ids, pipe.prepare_latents = ids_hook, prep_hook
    start = time.time()
    try:
        with torch.no_grad():
            latents = pipe(**kwargs, callback_on_step_end=step_end).images
    finally:
        del pipe._get_add_time_ids, pipe.prepare_latents
    out[case["key"]] = finite(case["key"], latents)
    fresh = type(scheduler).from_config(SDXL_SCHEDULER)
    fresh.set_timesteps(case["steps"])
    call = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items() if k not in ("generator", "image")}
    call["generator"] = f"torch.Generator().manual_seed({case['seed']})"
    if "image" in case:
        call["image"] = f"{case['image']} (PIL, RGB, {case['width']}x{case['height']}: used at its own size, no resize)"
    if "image_from" in case:
        call["image"] = f"the latents of {case['image_from']} [1,4,h,w] (not decoded)"
    docs[case["key"]] = dict(
        pipeline=type(pipe).__name__, call=call, shape=list(latents.shape),
        scheduler=dict(cls=type(scheduler).__name__, from_config="SDXL scheduler config (scheduler_config below)",
                       all_timesteps=[float(t) for t in fresh.timesteps],
                       **({"all_sigmas": [float(s) for s in fresh.sigmas]} if hasattr(fresh, "sigmas") else {}),
                       init_noise_sigma=float(fresh.init_noise_sigma), timesteps_run=timesteps),
        add_time_ids_calls=time_ids,
        **({"lora": case["lora_doc"]} if "lora_doc" in case else {}),
    )
    print(f"{case['key']}: {list(latents.shape)} std {latents.std():.3f} ({time.time() - start:.1f} s)", flush=True)
    return latents


def img2img_pipe(pipe):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    parts = {k: v for k, v in pipe.components.items() if k in ("vae", "text_encoder", "text_encoder_2", "tokenizer",
                                                                "tokenizer_2", "unet", "scheduler")}
    return quiet(StableDiffusionXLImg2ImgPipeline(**parts, requires_aesthetics_score=False, force_zeros_for_empty_prompt=True))


def differ(out, keys, floor=0.01):
    """Every pair of runs differs by more than 10x the runs' tolerance (1e-3), so a test of one against another's
    reference would fail (the refiner's last two low-noise steps change the hand-off latents least: a few %)."""
    diffs = {}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if out[a].shape == out[b].shape:
                d = rel(out[a], out[b])
                assert d > floor, (a, b, d)
                diffs[f"{a} vs {b}"] = round(d, 4)
    return diffs


def base_runs(pipe, all_cases, out, docs, lora_file, lora_expect, tag):
    """Cases a-e and the base half of f on one base pipeline; the LoRA last (it stays in the networks)."""
    img2img = img2img_pipe(pipe)
    for case in all_cases:
        if case["pipeline"] == "txt2img" and "lora" not in case:
            run_case(pipe, case, out, docs)
        elif case["pipeline"] == "img2img":
            run_case(img2img, case, out, docs)
    start = time.time()
    lora_doc = load_lora(pipe, lora_file, lora_expect)
    lora_doc = dict(how=LORA_HOW, lora_layers=lora_doc)
    print(f"LoRA loaded in {time.time() - start:.1f} s", flush=True)
    with torch.no_grad():  # the LoRA'd components, on the same inputs as the plain ones
        ids1, ids2 = out[f"{tag}.text_encoder.ids"][:1], out[f"{tag}.text_encoder_2.ids"][:1]
        h1 = pipe.text_encoder(ids1, output_hidden_states=True).hidden_states[-2]
        r2 = pipe.text_encoder_2(ids2, output_hidden_states=True)
        out[f"{tag}.lora.text_encoder.hidden_states_m2"] = finite("lora te", h1)
        out[f"{tag}.lora.text_encoder_2.hidden_states_m2"] = finite("lora te2", r2.hidden_states[-2])
        out[f"{tag}.lora.text_encoder_2.text_embeds"] = r2.text_embeds
        ctx = torch.cat([out[f"{tag}.text_encoder.hidden_states_m2"][:1], out[f"{tag}.text_encoder_2.hidden_states_m2"][:1]], -1)
        cond = dict(text_embeds=out[f"{tag}.text_encoder_2.text_embeds"][:1], time_ids=out[f"{tag}.unet.time_ids"])
        out[f"{tag}.lora.unet.out"] = finite("lora unet", pipe.unet(out[f"{tag}.unet.x"], out[f"{tag}.unet.t"],
                                                                     encoder_hidden_states=ctx, added_cond_kwargs=cond).sample)
    lora_doc["component_change"] = {
        "text_encoder.hidden_states_m2": rel(out[f"{tag}.lora.text_encoder.hidden_states_m2"], out[f"{tag}.text_encoder.hidden_states_m2"][:1]),
        "text_encoder_2.hidden_states_m2": rel(out[f"{tag}.lora.text_encoder_2.hidden_states_m2"], out[f"{tag}.text_encoder_2.hidden_states_m2"][:1]),
        "text_encoder_2.text_embeds": rel(out[f"{tag}.lora.text_encoder_2.text_embeds"], out[f"{tag}.text_encoder_2.text_embeds"][:1]),
        "unet.out": rel(out[f"{tag}.lora.unet.out"], out[f"{tag}.unet.out"]),
    }
    for case in all_cases:
        if "lora" in case:
            case = dict(case, lora_doc=lora_doc)
            run_case(pipe, case, out, docs)
            docs[case["key"]]["lora"]["relative_change_vs_" + case["same_as"]] = rel(out[case["key"]], out[case["same_as"]])
            assert docs[case["key"]]["lora"]["relative_change_vs_" + case["same_as"]] > 0.05


LORA_HOW = ("load_lora_weights' steps (load_lora in make_sdxl_reference.py: lora_state_dict with the UNet config, which maps "
            "sgm names to diffusers', load_lora_into_unet, load_lora_into_text_encoder for text_encoder and text_encoder_2), "
            "adapter 'sdxl' weight 1.0 via set_adapters, not fused: each listed Linear computes W x + b + 1.0 * (alpha / "
            "rank) * up(down(x)) = (W + 0.5 * up @ down) x + b; lora_layers: Linear layers that got a LoRA, per network")
LORA_EXPECT = {"unet": 10, "text_encoder": 5, "text_encoder_2": 5}


def part_base(weights, work):
    configs = pathlib.Path(tempfile.mkdtemp(prefix="configs-", dir=work))  # fresh: the tokenizer writer checks what it finds
    folders = {n: write_config_folder(n, configs) for n in ("sdxl", "sdxl-refiner")}
    out, docs, checks, timings = {}, {}, Checks(), {}
    pipe = load_full("base", weights, folders, checks, timings)
    start = time.time()
    encoders(out, pipe, "base")
    timings["base: text encoders (3 prompts)"] = round(time.time() - start, 1)
    start = time.time()
    unet_vae(out, pipe, "base", refiner=False)
    timings["base: unet (x2) + vae"] = round(time.time() - start, 1)
    lora = write_lora(FIX / "lora" / "sdxl-kohya.safetensors", tiny=False, seed=77)
    base_runs(pipe, cases(128, 64), out, docs, FIX / "lora" / "sdxl-kohya.safetensors", LORA_EXPECT, "base")
    save_file({k: v.contiguous() for k, v in out.items()}, str(work / "base.safetensors"))
    (work / "base.json").write_text(json.dumps(dict(cases=docs, checks=checks.log, timings=timings, lora=lora), indent=1))


def part_refiner(weights, work):
    configs = pathlib.Path(tempfile.mkdtemp(prefix="configs-", dir=work))  # fresh: the tokenizer writer checks what it finds
    folders = {n: write_config_folder(n, configs) for n in ("sdxl", "sdxl-refiner")}
    out, docs, checks, timings = {}, {}, Checks(), {}
    pipe = load_full("refiner", weights, folders, checks, timings)
    start = time.time()
    encoders(out, pipe, "refiner")
    unet_vae(out, pipe, "refiner", refiner=True)
    timings["refiner: components"] = round(time.time() - start, 1)
    base = load_file(str(work / "base.safetensors"))
    out["handoff.base"] = base["handoff.base"]
    for case in cases(128, 64):
        if case["pipeline"] == "refiner":
            run_case(pipe, case, out, docs)
    del out["handoff.base"]
    save_file({k: v.contiguous() for k, v in out.items()}, str(work / "refiner.safetensors"))
    (work / "refiner.json").write_text(json.dumps(dict(cases=docs, checks=checks.log, timings=timings), indent=1))


def versions():
    import diffusers
    import transformers

    src = pathlib.Path(diffusers.__file__).parent
    files = ["pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
             "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py",
             "schedulers/scheduling_euler_discrete.py", "schedulers/scheduling_euler_ancestral_discrete.py",
             "schedulers/scheduling_dpmsolver_multistep.py", "loaders/single_file_utils.py", "loaders/lora_conversion_utils.py"]
    import peft
    return dict(torch=torch.__version__, transformers=transformers.__version__, diffusers=diffusers.__version__,
                diffusers_commit="not recorded: the diffusers source tree used had no git metadata; sha256 of the files "
                                 "that matter are below",
                diffusers_sources={f: hashlib.sha256((src / f).read_bytes()).hexdigest()[:16] for f in files},
                peft=peft.__version__, numpy=np.__version__, pillow=Image.__version__, device="cpu", dtype="float32")


def common_doc(size_note):
    return dict(
        prompts=PROMPTS, prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=CFG, samplers=SAMPLERS,
        scheduler_config=SDXL_SCHEDULER, micro_conditioning_case=MICRO, sizes=size_note, rng=RNG_NOTES,
        conditioning=CONDITIONING_NOTES, tolerances="components rel err < 1e-4, final latents < 1e-3 (fp32 CPU)",
        case_entries={"<case key>": "final latents [1,4,h,w] (output_type='latent'; no decode, not unscaled)",
                      "<case key>.start": "img2img / refiner: the latents prepare_latents returned (before the first step)"},
    )


def part_assemble(work):
    out, parts = {}, {}
    for name in ("base", "refiner"):
        out.update(load_file(str(work / f"{name}.safetensors")))
        parts[name] = json.loads((work / f"{name}.json").read_text())
    run_keys = [c["key"] for c in cases(128, 64)]
    diffs = differ(out, run_keys)
    doc = dict(
        about="diffusers reference outputs for SDXL on the random full-size files; made by scripts/make_sdxl_reference.py",
        weights=FILES, weights_recipe="scripts/make_random_checkpoints.py --only sdxl --only sdxl-refiner (manifests "
                                      "scripts/sdxl_manifest.json, sdxl_refiner_manifest.json, seed 1234, fp16)",
        loading="Pipeline.from_single_file(file, config=<typed-in folder: scripts/diffusers_configs.py 'sdxl' / "
                "'sdxl-refiner'>, local_files_only=True, torch_dtype=torch.float16), checked, then every network "
                ".to(torch.float32); the base's img2img pipeline is StableDiffusionXLImg2ImgPipeline(**base components, "
                "requires_aesthetics_score=False)",
        **common_doc("txt2img and the hand-off at 128x128 (latents 16x16); img2img at 64x64, the PNG's own size"),
        entries={**{k.replace("<tag>", "base|refiner"): v for k, v in COMPONENT_ENTRIES.items()},
                 "base.lora.*": "with the LoRA loaded (scale 1): text_encoder / text_encoder_2 of PROMPTS[0] (ids row 0), "
                                "and the UNet on base.unet's inputs", **common_doc("")["case_entries"]},
        lora=describe_lora(FIX / "lora" / "sdxl-kohya.safetensors", tiny=False, seed=77),
        cases={**parts["base"]["cases"], **parts["refiner"]["cases"]},
        runs_differ_pairwise_rel=diffs,
        checks={**parts["base"]["checks"], **parts["refiner"]["checks"]},
        made_with=versions(),
    )
    for c in doc["cases"].values():
        c.pop("seconds", None)  # older work files; the fixture holds no timings (same inputs, same bytes)
        c.get("lora", {}).pop("load_seconds", None)
    print("timings (s):", {**parts["base"]["timings"], **parts["refiner"]["timings"]})
    save_file({k: v.contiguous() for k, v in sorted(out.items())}, str(FIX / "sdxl-reference.safetensors"))
    (FIX / "sdxl-reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(out)} tensors -> {FIX / 'sdxl-reference.safetensors'}")


def part_tiny(work):
    t0 = time.time()
    folder = write_config_folder("sdxl", pathlib.Path(tempfile.mkdtemp(prefix="configs-", dir=work)))
    torch.manual_seed(0)  # the twins' default init is overwritten; this only keeps construction quiet and fixed
    base, refiner = tiny_pipelines(folder)
    out, docs, timings = {}, {}, {}
    start = time.time()
    encoders(out, base, "tiny")
    unet_vae(out, base, "tiny", refiner=False)
    encoders(out, refiner, "tiny_refiner")
    unet_vae(out, refiner, "tiny_refiner", refiner=True)
    timings["components"] = round(time.time() - start, 2)
    lora = write_lora(FIX / "lora" / "tiny-sdxl-kohya.safetensors", tiny=True, seed=78)
    all_cases = cases(64, 64)
    # the refiner hand-off before the LoRA goes into the base networks
    base_cases = [c for c in all_cases if c["pipeline"] != "refiner"]
    img2img = img2img_pipe(base)
    for case in base_cases:
        if case["pipeline"] == "txt2img" and "lora" not in case:
            run_case(base, case, out, docs)
        elif case["pipeline"] == "img2img":
            run_case(img2img, case, out, docs)
    for case in all_cases:
        if case["pipeline"] == "refiner":
            run_case(refiner, case, out, docs)
    # textual inversion: per encoder, as diffusers documents for SDXL embeddings (clip_l / clip_g); the encoders'
    # configs say eos_token_id 49407 (TI_EOS)
    emb_path = FIX / "embeddings" / f"{TI_TOKEN}.safetensors"
    emb = write_embedding(emb_path)
    ti_pipe = quiet(type(base)(**tiny_components(eos_token_id=49407), tokenizer=type(base.tokenizer).from_pretrained(str(folder / "tokenizer")),
                               tokenizer_2=type(base.tokenizer_2).from_pretrained(str(folder / "tokenizer_2")),
                               scheduler=base.scheduler, force_zeros_for_empty_prompt=True))
    ti_pipe.load_textual_inversion(emb["clip_l"], token=TI_TOKEN, text_encoder=ti_pipe.text_encoder, tokenizer=ti_pipe.tokenizer)
    ti_pipe.load_textual_inversion(emb["clip_g"], token=TI_TOKEN, text_encoder=ti_pipe.text_encoder_2, tokenizer=ti_pipe.tokenizer_2)
    with torch.no_grad():
        for i, (tok, te) in enumerate(((ti_pipe.tokenizer, ti_pipe.text_encoder), (ti_pipe.tokenizer_2, ti_pipe.text_encoder_2))):
            name = "text_encoder" if i == 0 else "text_encoder_2"
            text = ti_pipe.maybe_convert_prompt(TI_PROMPT, tok)
            ids = tok([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            out[f"tiny.ti.{name}.ids"] = ids
            res = te(ids, output_hidden_states=True)
            out[f"tiny.ti.{name}.hidden_states_m2"] = res.hidden_states[-2]
            if i:
                out[f"tiny.ti.{name}.text_embeds"] = res.text_embeds
    ti_ids = {"text_encoder": out["tiny.ti.text_encoder.ids"][0, :12].tolist(),
              "text_encoder_2": out["tiny.ti.text_encoder_2.ids"][0, :12].tolist()}
    assert 49408 in ti_ids["text_encoder"] and 49409 in ti_ids["text_encoder_2"], ti_ids
    ti_case = dict(key="ti.txt2img.euler", pipeline="txt2img", sampler="euler", steps=5, seed=48, prompt=TI_PROMPT,
                   negative=NEGATIVE, width=64, height=64)
    run_case(ti_pipe, ti_case, out, docs)
    docs["ti.txt2img.euler"]["textual_inversion"] = dict(
        file=str(emb_path.relative_to(HERE.parent)), recipe=" ".join(write_embedding.__doc__.split()),
        how=f"state_dict = load_file(file); pipe.load_textual_inversion(state_dict['clip_l'], token='{TI_TOKEN}', "
            f"text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer); pipe.load_textual_inversion(state_dict['clip_g'], "
            f"token='{TI_TOKEN}', text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2). Two vectors: diffusers adds "
            f"tokens '{TI_TOKEN}' (49408) and '{TI_TOKEN}_1' (49409) to each tokenizer and rewrites the prompt's "
            f"'{TI_TOKEN}' to '{TI_TOKEN} {TI_TOKEN}_1' (maybe_convert_prompt); each encoder's embedding rows 49408, "
            f"49409 = clip_l / clip_g rows 0, 1",
        prompt=TI_PROMPT, ids_first_12=ti_ids, text_encoder_configs=TI_EOS)
    # LoRA last: it stays in the base networks
    start = time.time()
    lora_doc = load_lora(base, FIX / "lora" / "tiny-sdxl-kohya.safetensors", LORA_EXPECT)
    lora_doc = dict(how=LORA_HOW, lora_layers=lora_doc)
    with torch.no_grad():
        ids1, ids2 = out["tiny.text_encoder.ids"][:1], out["tiny.text_encoder_2.ids"][:1]
        out["tiny.lora.text_encoder.hidden_states_m2"] = base.text_encoder(ids1, output_hidden_states=True).hidden_states[-2]
        r2 = base.text_encoder_2(ids2, output_hidden_states=True)
        out["tiny.lora.text_encoder_2.hidden_states_m2"], out["tiny.lora.text_encoder_2.text_embeds"] = r2.hidden_states[-2], r2.text_embeds
        ctx = torch.cat([out["tiny.text_encoder.hidden_states_m2"][:1], out["tiny.text_encoder_2.hidden_states_m2"][:1]], -1)
        cond = dict(text_embeds=out["tiny.text_encoder_2.text_embeds"][:1], time_ids=out["tiny.unet.time_ids"])
        out["tiny.lora.unet.out"] = base.unet(out["tiny.unet.x"], out["tiny.unet.t"], encoder_hidden_states=ctx,
                                              added_cond_kwargs=cond).sample
    lora_doc["component_change"] = {
        k: rel(out[f"tiny.lora.{k}"], out[f"tiny.{k}"][:1]) for k in
        ("text_encoder.hidden_states_m2", "text_encoder_2.hidden_states_m2", "text_encoder_2.text_embeds", "unet.out")}
    for k, v in lora_doc["component_change"].items():
        assert v > 1e-3, (k, v)
    for case in all_cases:
        if "lora" in case:
            run_case(base, dict(case, lora_doc=lora_doc), out, docs)
            docs[case["key"]]["lora"]["relative_change_vs_" + case["same_as"]] = rel(out[case["key"]], out[case["same_as"]])
    timings["total"] = round(time.time() - t0, 2)
    run_keys = [c["key"] for c in all_cases] + ["ti.txt2img.euler"]
    diffs = differ(out, run_keys)
    doc = dict(
        about="diffusers reference outputs for the tiny SDXL presets; made by scripts/make_sdxl_reference.py --part tiny",
        weights={"tiny-sdxl": "test/fixtures/tiny-sdxl-manifest.json", "tiny-sdxl-refiner": "test/fixtures/tiny-sdxl-refiner-manifest.json"},
        weights_recipe="make_random_sd15.draw (test/tiny.ts' recipe) over the manifest, in its order, seed 1234, float32 (no fp16 cast)",
        twins=dict(unet=dict(base=TINY_SDXL_UNET, refiner=TINY_SDXL_REFINER_UNET,
                             filled="diffusers' convert_ldm_unet_checkpoint(state_dict, config), strict"),
                   vae=dict(config=TINY_VAE, filled="convert_ldm_vae_checkpoint, strict"),
                   text_encoder=dict(cls="CLIPTextModel", config=TINY_CLIP_L, from_prefix="conditioner.embedders.0.transformer.text_model."),
                   text_encoder_2=dict(cls="CLIPTextModelWithProjection", config=TINY_CLIP_G,
                                       from_prefix="conditioner.embedders.1.transformer. (refiner: embedders.0): text_model.* "
                                                   "and text_projection.weight"),
                   tokenizers="the full-size ones (sdxl config folder): tokenizer pads 49407, tokenizer_2 pads 0",
                   pipelines="StableDiffusionXLPipeline(force_zeros_for_empty_prompt=True); img2img: "
                             "StableDiffusionXLImg2ImgPipeline(same components, requires_aesthetics_score=False); refiner: "
                             "StableDiffusionXLImg2ImgPipeline(tiny refiner, text_encoder=None, tokenizer=None, "
                             "requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)"),
        **common_doc("all runs 64x64; the tiny VAE halves (vae_scale_factor 2): latents [1,4,32,32]"),
        entries={**{k.replace("<tag>", "tiny|tiny_refiner"): v for k, v in COMPONENT_ENTRIES.items()},
                 "tiny.lora.*": "with the tiny LoRA loaded (scale 1): the encoders on ids row 0, the UNet on tiny.unet's inputs",
                 "tiny.ti.<encoder>.{ids,hidden_states_m2,text_embeds}": f"the prompt '{TI_PROMPT}' with the textual "
                     "inversion loaded (ids contain the added tokens 49408, 49409); encoders with eos_token_id 49407 "
                     "(cases.ti.txt2img.euler.textual_inversion.text_encoder_configs)",
                 **common_doc("")["case_entries"]},
        lora=lora, cases=docs, runs_differ_pairwise_rel=diffs, made_with=versions(),
    )
    save_file({k: v.contiguous() for k, v in sorted(out.items())}, str(FIX / "tiny-sdxl-reference.safetensors"))
    (FIX / "tiny-sdxl-reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(out)} tensors -> {FIX / 'tiny-sdxl-reference.safetensors'}; timings (s): {timings}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", type=pathlib.Path, nargs="?")
    ap.add_argument("--part", required=True, choices=["tiny", "base", "refiner", "assemble", "all"])
    ap.add_argument("--work", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "sdxl-reference-work")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from diffusers.utils import logging

    logging.set_verbosity_error()
    if a.part == "all":
        for part in ("base", "refiner", "assemble", "tiny"):
            subprocess.run([sys.executable, __file__, str(a.weights), "--part", part, "--work", str(a.work)], check=True)
    elif a.part == "tiny":
        part_tiny(a.work)
    elif a.part == "assemble":
        part_assemble(a.work)
    else:
        if a.weights is None:
            ap.error("WEIGHTS_DIR is required")
        (part_base if a.part == "base" else part_refiner)(a.weights, a.work)


if __name__ == "__main__":
    main()
