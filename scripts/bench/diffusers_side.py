#!/usr/bin/env python3
"""The diffusers side of scripts/benchmark.js: one measurement per process, a JSON line on stdout.

Usage: diffusers_side.py MODE WEIGHTS [FAMILY] [compiled]
  FAMILY sd15 (default; MODE: load | step256 | step512 | image512 | image256)
         sdxl (MODE: load | step512 | step1024): StableDiffusionXLPipeline, configs of
         stabilityai/stable-diffusion-xl-base-1.0 (scripts/diffusers_configs.py)
compiled: the UNet through torch.compile (inductor, freezing on: weights prepacked for oneDNN, fused
post-ops), compiled by a warm-up call at the measured shape whose time is reported apart (compile_s).
Needs diffusers on PYTHONPATH (its source tree's src/), torch, transformers. The pipeline comes from
the single-file checkpoint with local configs (written to a temp dir; nothing is downloaded), in float32.
BENCH_STEPS: the steps of an image mode (default 20).
"""
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

T0 = time.perf_counter()
import torch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from diffusers_configs import write_config_folder  # noqa: E402
from make_tokenizer_fixture import build_tokenizer  # noqa: E402

SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, clip_sample=False)


def write_configs(root: pathlib.Path):
    def put(sub, name, cfg):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / name).write_text(json.dumps(cfg))
    put(".", "model_index.json", {"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False})
    put("unet", "config.json", {"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "cross_attention_dim": 768, "attention_head_dim": 8})
    put("vae", "config.json", {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "sample_size": 512})
    put("text_encoder", "config.json", {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": 768,
        "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12, "max_position_embeddings": 77,
        "vocab_size": 49408, "hidden_act": "quick_gelu", "projection_dim": 768, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1})
    put("scheduler", "scheduler_config.json", {"_class_name": "EulerDiscreteScheduler", **SCHEDULER})
    tok = build_tokenizer(root / "tokenizer")
    tok.model_max_length = 77
    tok.save_pretrained(str(root / "tokenizer"))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(mode, weights, family="sd15", variant=""):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    t = time.perf_counter()
    if family == "sdxl":
        cfg = write_config_folder("sdxl", pathlib.Path(tempfile.mkdtemp(prefix="sdxl-config-")))
    else:
        cfg = pathlib.Path(tempfile.mkdtemp(prefix="sd15-config-"))
        (cfg / "tokenizer").mkdir()
        write_configs(cfg)
    setup = time.perf_counter() - t  # the local configs are our scaffolding, not diffusers' load time
    t = time.perf_counter()
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline.from_single_file(weights, config=str(cfg), local_files_only=True, torch_dtype=torch.float32)
    else:
        pipe = StableDiffusionPipeline.from_single_file(weights, config=str(cfg), local_files_only=True,
                                                        safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    compiled = variant == "compiled"
    out = {"impl": "diffusers-compiled" if compiled else "diffusers", "family": family, "mode": mode, "load_s": time.perf_counter() - t,
           "load_from_start_s": time.perf_counter() - T0 - setup, "load_peak_rss_mb": peak_rss_mb()}
    if compiled:
        import torch._inductor.config as inductor
        inductor.freezing = True
        pipe.unet = torch.compile(pipe.unet)
    with torch.inference_mode():
        if compiled and family == "sd15":  # compiled by a first call as the measurement makes it (batch 2: CFG)
            t = time.perf_counter()
            if mode.startswith("step"):
                side = int(mode[4:]) // 8
                pipe.unet(torch.randn(2, 4, side, side), torch.tensor([500, 500]), encoder_hidden_states=torch.randn(2, 77, 768))
            elif mode.startswith("image"):
                pipe("warm", num_inference_steps=2, guidance_scale=7.5, width=int(mode[5:]), height=int(mode[5:]), output_type="latent")
            out["compile_s"] = time.perf_counter() - t
        if mode.startswith("step"):
            pixels = int(mode[4:])
            side = pixels // 8
            g = torch.Generator().manual_seed(0)
            x = torch.randn(2, 4, side, side, generator=g)
            t_ = torch.tensor([500, 500])
            if family == "sdxl":  # context [2,77,2048], pooled text [2,1280], 6 time ids per row
                kw = dict(encoder_hidden_states=torch.randn(2, 77, 2048, generator=g),
                          added_cond_kwargs=dict(text_embeds=torch.randn(2, 1280, generator=g),
                                                 time_ids=torch.tensor([[pixels, pixels, 0, 0, pixels, pixels]] * 2, dtype=torch.float32)))
            else:
                kw = dict(encoder_hidden_states=torch.randn(2, 77, 768, generator=g))
            pipe.unet(x, t_, **kw)  # warm-up
            t = time.perf_counter()
            pipe.unet(x, t_, **kw)
            out["seconds"] = time.perf_counter() - t
        elif mode.startswith("image"):
            side = int(mode[5:])
            t = time.perf_counter()
            pipe("a photo of a cat", negative_prompt="blurry", num_inference_steps=int(os.environ.get("BENCH_STEPS", "20")), guidance_scale=7.5, width=side, height=side,
                 generator=torch.Generator().manual_seed(1), output_type="np")
            out["seconds"] = time.perf_counter() - t
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
