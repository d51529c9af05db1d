#!/usr/bin/env python3
"""Writes random Stable Diffusion 2.x, inpainting and VAE-only files in their real single-file layouts.

Same recipe as make_random_sd15.py (its draw(): torch's CPU generator, key by key in manifest order;
1-D weights 1 + 0.05 n, 1-D biases 0.05 n, keys containing "embedding" 0.02 n, others n / sqrt(fan_in),
0-D tensors n), so same seed, same bytes, and libtorch's CPU generator reproduces them. Files are fp16
on disk (the draw is fp32, then cast), as most downloaded checkpoints are.

  sd21-v-random-1234.fp16.safetensors    SD 2.1 768-v layout (scripts/sd2_manifest.json), seed 1234:
      model.diffusion_model.*  the SD 2 UNet: SD 1.5's names, linear proj_in/proj_out [C,C],
                               attn2.to_k/to_v [C,1024] (heads of 64 channels: nothing in the weights)
      first_stage_model.*      the SD 1.x VAE
      cond_stage_model.model.* OpenCLIP ViT-H/14's text tower in open_clip's state_dict order
                               (positional_embedding, text_projection, logit_scale [], 24 resblocks,
                               token_embedding, ln_final), as ldm's FrozenOpenCLIPEmbedder saves it
      + the 12 schedule buffers, model_ema.decay, model_ema.num_updates (no position_ids: OpenCLIP has none)
  sd21-base-random-1234.fp16.ckpt        the SAME tensors, torch.save({"state_dict", "global_step": 875000,
                                         "epoch": 0}): diffusers calls a "v2" file with global_step 875000
                                         an epsilon (512 base) model, any other a v model
  sd15-inpaint-random-1234.fp16.safetensors  sd15_manifest.json with input_blocks.0.0.weight [320,9,3,3]
                                         (+ the SD 1.5 extras, position_ids included), seed 1234
  sd2-inpaint-random-1234.fp16.safetensors   sd2_manifest.json with input_blocks.0.0.weight [320,9,3,3], seed 1234
  vae-random-4321.fp16.safetensors       a VAE alone as people download it (vae-ft-mse-840000 layout: bare
                                         encoder.*, decoder.*, quant_conv.*, post_quant_conv.*;
                                         scripts/vae_manifest.json), seed 4321

The inpainting files change one shape, so every later draw differs from the 4-channel file's.
Each file is written to a temporary name and renamed, so an interrupted run leaves no partial file.

Usage: make_random_checkpoints.py OUT_DIR [--only NAME ...]   (NAME: sd21-v, sd21-base, sd15-inpaint,
       sd2-inpaint, vae; default all; files already there are kept)
       make_random_checkpoints.py --write-manifests   (rewrites sd2_manifest.json and vae_manifest.json
       from sd15_manifest.json and the OpenCLIP order; what they are made from is below)
Needs: torch (pip install torch==2.13.0) and safetensors.
"""
import argparse
import json
import math
import os
import pathlib
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_random_sd15 import draw, schedule_buffers  # noqa: E402

UNET, VAE = "model.diffusion_model.", "first_stage_model."
OPEN_CLIP = "cond_stage_model.model."
SD1_CLIP = "cond_stage_model.transformer.text_model."
CONV_IN = UNET + "input_blocks.0.0.weight"


def _read(name: str) -> dict:
    return json.loads((HERE / name).read_text())


def _write_manifest(name: str, manifest: dict):
    with open(HERE / name, "w") as f:
        json.dump(manifest, f, indent=0)
        f.write("\n")


def open_clip_text(width=1024, layers=24, vocab=49408, positions=77, mlp=4096) -> dict:
    """OpenCLIP's text tower (ViT-H/14: 1024 wide, 24 layers) in open_clip.model.CLIP's state_dict
    order, checked against open_clip_torch 3.3.0 (params of CLIP itself, then its modules)."""
    m = {"positional_embedding": [positions, width], "text_projection": [width, width], "logit_scale": []}
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        m.update({
            b + "ln_1.weight": [width], b + "ln_1.bias": [width],
            b + "attn.in_proj_weight": [3 * width, width], b + "attn.in_proj_bias": [3 * width],
            b + "attn.out_proj.weight": [width, width], b + "attn.out_proj.bias": [width],
            b + "ln_2.weight": [width], b + "ln_2.bias": [width],
            b + "mlp.c_fc.weight": [mlp, width], b + "mlp.c_fc.bias": [mlp],
            b + "mlp.c_proj.weight": [width, mlp], b + "mlp.c_proj.bias": [width],
        })
    m.update({"token_embedding.weight": [vocab, width], "ln_final.weight": [width], "ln_final.bias": [width]})
    return {OPEN_CLIP + k: v for k, v in m.items()}


def derive_manifests() -> tuple:
    """sd2: SD 1.5's UNet with linear projections and 1024-wide cross-attention, the same VAE, OpenCLIP.
    vae: SD 1.5's first_stage_model.* without the prefix."""
    sd15 = _read("sd15_manifest.json")
    sd2 = {}
    for k, shape in sd15.items():
        if k.startswith(UNET):
            if (".proj_in.weight" in k or ".proj_out.weight" in k) and len(shape) == 4:
                shape = shape[:2]
            elif ".attn2.to_k." in k or ".attn2.to_v." in k:
                shape = [shape[0], 1024]
            sd2[k] = shape
        elif k.startswith(VAE):
            sd2[k] = shape
    sd2.update(open_clip_text())
    vae = {k[len(VAE):]: v for k, v in sd15.items() if k.startswith(VAE)}
    return sd2, vae


def inpainting(manifest: dict) -> dict:
    """The same layout with a 9-channel UNet input (latents + mask + masked-image latents)."""
    out = dict(manifest)
    out[CONV_IN] = [out[CONV_IN][0], 9, *out[CONV_IN][2:]]
    return out


def extras(sd1_clip: bool) -> dict:
    """What real files carry besides the model, which loaders skip."""
    out = dict(schedule_buffers())
    if sd1_clip:
        out[SD1_CLIP + "embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(470000, dtype=torch.int32)
    return out


def half(sd: dict) -> dict:
    """Casts in place, key by key, so the fp32 and fp16 copies never coexist whole."""
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = v.half()
    return sd


# name -> (file, manifest, seed, SD 1.x CLIP extras?); None manifest = the file shares sd21-v's draw
FILES = {
    "sd21-v": ("sd21-v-random-1234.fp16.safetensors", lambda: _read("sd2_manifest.json"), 1234, False),
    "sd21-base": ("sd21-base-random-1234.fp16.ckpt", None, 1234, False),
    "sd15-inpaint": ("sd15-inpaint-random-1234.fp16.safetensors", lambda: inpainting(_read("sd15_manifest.json")), 1234, True),
    "sd2-inpaint": ("sd2-inpaint-random-1234.fp16.safetensors", lambda: inpainting(_read("sd2_manifest.json")), 1234, False),
    "vae": ("vae-random-4321.fp16.safetensors", lambda: _read("vae_manifest.json"), 4321, None),
}


def state_dict(name: str) -> dict:
    _, manifest, seed, sd1_clip = FILES["sd21-v" if name == "sd21-base" else name]
    sd = draw(manifest(), seed)
    if sd1_clip is not None:
        sd.update(extras(sd1_clip))
    return half(sd)


def save(name: str, sd: dict, path: pathlib.Path):
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    if name == "sd21-base":
        with open(tmp, "wb") as f:  # through a file object the zip's folder is "archive/", as in real .ckpt files
            torch.save({"state_dict": sd, "global_step": 875000, "epoch": 0}, f)
    else:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def write(out_dir: pathlib.Path, names) -> list:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, cached = [], {}
    for name in names:
        path = out_dir / FILES[name][0]
        paths.append(path)
        if path.exists():
            continue
        start = time.time()
        key = "sd2" if name in ("sd21-v", "sd21-base") else name
        sd = cached.pop(key, None) or state_dict(name)
        save(name, sd, path)
        if key == "sd2" and {"sd21-v", "sd21-base"} <= set(names):
            cached[key] = sd  # the other of the pair is the same tensors
        params = sum(math.prod(v.shape) for v in sd.values())
        print(f"{path.name}: {params / 1e6:.1f}M values, {path.stat().st_size / 1e9:.2f} GB, {time.time() - start:.1f} s", flush=True)
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=pathlib.Path, nargs="?")
    ap.add_argument("--only", action="append", choices=list(FILES), help="one file (repeatable); default all")
    ap.add_argument("--write-manifests", action="store_true")
    a = ap.parse_args()
    if a.write_manifests:
        sd2, vae = derive_manifests()
        _write_manifest("sd2_manifest.json", sd2)
        _write_manifest("vae_manifest.json", vae)
        print(f"sd2_manifest.json: {len(sd2)} tensors, vae_manifest.json: {len(vae)} tensors")
    elif a.out_dir is None:
        ap.error("OUT_DIR is required")
    else:
        for p in write(a.out_dir, a.only or list(FILES)):
            print(p)
