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
  sdxl-base-random-1234.fp16.safetensors   sd_xl_base_1.0's layout (scripts/sdxl_manifest.json, 2,514 tensors,
                                         3.47 G values; see sdxl_manifests()), seed 1234:
      model.diffusion_model.*  sgm UNet: 320 channels x [1, 2, 4], transformer depth [0, 2, 10] (level 0: no
                               attention), middle 10, heads of 64 channels, linear proj_in/proj_out,
                               cross-attention 2048 wide, label_emb.0.0 [1280, 2816], label_emb.0.2 [1280, 1280]
      first_stage_model.*      the SD VAE (sd15_manifest.json's)
      conditioner.embedders.0.transformer.text_model.*  CLIP ViT-L/14, transformers' names (+ position_ids int64)
      conditioner.embedders.1.model.*  OpenCLIP ViT-bigG/14 text tower, open_clip order (1280 wide, 32 layers)
      and nothing else: no ldm schedule buffers or EMA entries (sgm's DiffusionEngine has none); some
      sgm-saved files also carry denoiser.sigmas [1000], which is not added here
  sdxl-refiner-random-1234.fp16.safetensors  sd_xl_refiner_1.0's layout (scripts/sdxl_refiner_manifest.json, 1,858
                                         tensors): UNet 384 x [1, 2, 4, 4], depth [0, 4, 4, 0], middle 4, context 1280,
                                         label_emb.0.0 [1536, 2560]; the SD VAE; bigG as conditioner.embedders.0.model.*
  The two SDXL files are drawn and written tensor by tensor (save_streaming: the bytes save_file would write,
  without 14 GB of fp32 in memory).

The inpainting files change one shape, so every later draw differs from the 4-channel file's.
Each file is written to a temporary name and renamed, so an interrupted run leaves no partial file.

Usage: make_random_checkpoints.py OUT_DIR [--only NAME ...]   (NAME: sd21-v, sd21-base, sd15-inpaint,
       sd2-inpaint, vae, sdxl, sdxl-refiner; default all; files already there are kept)
       make_random_checkpoints.py --write-manifests   (rewrites sd2_manifest.json and vae_manifest.json
       from sd15_manifest.json and the OpenCLIP order, sdxl_manifest.json, sdxl_refiner_manifest.json and
       test/fixtures/tiny-sdxl-manifest.json, tiny-sdxl-refiner-manifest.json from the generators below;
       with diffusers on PYTHONPATH it also checks each UNet manifest against diffusers' conversion)
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
FIXTURES = HERE.parent / "test" / "fixtures"
sys.path.insert(0, str(HERE))
from make_random_sd15 import draw, draws, schedule_buffers, temporary  # noqa: E402

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


def open_clip_text(width=1024, layers=24, vocab=49408, positions=77, mlp=4096, prefix=OPEN_CLIP) -> dict:
    """OpenCLIP's text tower (ViT-H/14: 1024 wide, 24 layers; ViT-bigG/14: 1280, 32, mlp 5120) in
    open_clip.model.CLIP's state_dict order, checked against open_clip_torch 3.3.0 (params of CLIP itself,
    then its modules). attn_mask is a non-persistent buffer: not in files."""
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
    return {prefix + k: v for k, v in m.items()}


def clip_text(prefix: str, width: int, layers: int, mlp: int, vocab=49408, positions=77, projection=None) -> dict:
    """transformers' CLIPTextModel under `prefix` (+ "text_model."), in the order of the tiny preset's
    manifest (test/fixtures/tiny-manifest.json: embeddings, per layer q, k, v, out, layer_norm1, fc1, fc2,
    layer_norm2, final_layer_norm); `projection`: CLIPTextModelWithProjection's text_projection.weight
    [projection, width] (Linear, no bias) after them."""
    t = prefix + "text_model."
    m = {t + "embeddings.token_embedding.weight": [vocab, width], t + "embeddings.position_embedding.weight": [positions, width]}
    for i in range(layers):
        b = f"{t}encoder.layers.{i}."
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            m.update({f"{b}self_attn.{p}.weight": [width, width], f"{b}self_attn.{p}.bias": [width]})
        m.update({b + "layer_norm1.weight": [width], b + "layer_norm1.bias": [width],
                  b + "mlp.fc1.weight": [mlp, width], b + "mlp.fc1.bias": [mlp],
                  b + "mlp.fc2.weight": [width, mlp], b + "mlp.fc2.bias": [width],
                  b + "layer_norm2.weight": [width], b + "layer_norm2.bias": [width]})
    m.update({t + "final_layer_norm.weight": [width], t + "final_layer_norm.bias": [width]})
    if projection:
        m[prefix + "text_projection.weight"] = [projection, width]
    return m


def sgm_unet(model_channels: int, channel_mult: list, depth: list, middle_depth: int, context_dim: int,
             adm_in_channels=None, linear=True, num_res_blocks=2, in_channels=4, out_channels=4, prefix=UNET) -> dict:
    """The LDM/sgm UNetModel's tensors (openaimodel.py), in module registration order: time_embed, label_emb
    (adm_in_channels: Sequential(Linear(adm, 4C), SiLU, Linear(4C, 4C))), input_blocks, middle_block,
    output_blocks, out. depth[level] transformer blocks per SpatialTransformer at each level (0: no
    attention there); ResBlock: in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection when the
    width changes; SpatialTransformer: norm, proj_in, transformer_blocks.j.{attn1, ff, attn2, norm1..3},
    proj_out (linear: [C, C], else 1x1 conv [C, C, 1, 1]); GEGLU ff: net.0.proj [8C, C], net.2 [C, 4C].
    With (32, [1, 2], [1, 1], 1, 32, conv) it is the tiny preset's UNet, key for key in tiny-manifest.json's
    order (checked by --write-manifests)."""
    C, T = model_channels, 4 * model_channels
    m = {}

    def add(key, shape, bias=True):
        m[prefix + key + ".weight"] = shape
        if bias:
            m[prefix + key + ".bias"] = [shape[0]]

    def res(p, cin, cout):
        add(p + "in_layers.0", [cin]), add(p + "in_layers.2", [cout, cin, 3, 3]), add(p + "emb_layers.1", [cout, T])
        add(p + "out_layers.0", [cout]), add(p + "out_layers.3", [cout, cout, 3, 3])
        if cin != cout:
            add(p + "skip_connection", [cout, cin, 1, 1])

    def transformer(p, ch, n):
        proj = [ch, ch] if linear else [ch, ch, 1, 1]
        add(p + "norm", [ch]), add(p + "proj_in", proj)
        for j in range(n):
            b = f"{p}transformer_blocks.{j}."
            add(b + "attn1.to_q", [ch, ch], False), add(b + "attn1.to_k", [ch, ch], False)
            add(b + "attn1.to_v", [ch, ch], False), add(b + "attn1.to_out.0", [ch, ch])
            add(b + "ff.net.0.proj", [8 * ch, ch]), add(b + "ff.net.2", [ch, 4 * ch])
            add(b + "attn2.to_q", [ch, ch], False), add(b + "attn2.to_k", [ch, context_dim], False)
            add(b + "attn2.to_v", [ch, context_dim], False), add(b + "attn2.to_out.0", [ch, ch])
            add(b + "norm1", [ch]), add(b + "norm2", [ch]), add(b + "norm3", [ch])
        add(p + "proj_out", proj)

    add("time_embed.0", [T, C]), add("time_embed.2", [T, T])
    if adm_in_channels:
        add("label_emb.0.0", [T, adm_in_channels]), add("label_emb.0.2", [T, T])
    add("input_blocks.0.0", [C, in_channels, 3, 3])
    skips, ch, i = [C], C, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            res(f"input_blocks.{i}.0.", ch, mult * C)
            ch = mult * C
            if depth[level]:
                transformer(f"input_blocks.{i}.1.", ch, depth[level])
            skips.append(ch)
            i += 1
        if level != len(channel_mult) - 1:
            add(f"input_blocks.{i}.0.op", [ch, ch, 3, 3])
            skips.append(ch)
            i += 1
    res("middle_block.0.", ch, ch), transformer("middle_block.1.", ch, middle_depth), res("middle_block.2.", ch, ch)
    i = 0
    for level, mult in reversed(list(enumerate(channel_mult))):
        for r in range(num_res_blocks + 1):
            res(f"output_blocks.{i}.0.", ch + skips.pop(), mult * C)
            ch, n = mult * C, 1
            if depth[level]:
                transformer(f"output_blocks.{i}.1.", ch, depth[level])
                n = 2
            if level and r == num_res_blocks:
                add(f"output_blocks.{i}.{n}.conv", [ch, ch, 3, 3])
            i += 1
    add("out.0", [ch]), add("out.2", [out_channels, ch, 3, 3])
    return m


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


SDXL_CLIP_L = "conditioner.embedders.0.transformer."
SDXL_BIGG = "conditioner.embedders.1.model."
REFINER_BIGG = "conditioner.embedders.0.model."


def sdxl_manifests() -> tuple:
    """sd_xl_base_1.0 and sd_xl_refiner_1.0 as sgm's DiffusionEngine saves them (no schedule buffers, no EMA):
    base: sgm UNet (320, [1, 2, 4], transformer depth [0, 2, 10], middle 10, 2048-wide context, label_emb
    from 2816 = 1280 pooled + 6 x 256 Fourier features), the SD VAE, CLIP ViT-L/14 (transformers' names,
    12 layers, 768) and OpenCLIP ViT-bigG/14 (32 layers, 1280, mlp 5120); refiner: UNet (384, [1, 2, 4, 4],
    depth [0, 4, 4, 0], middle 4, context 1280, adm 2560 = 1280 + 5 x 256), the SD VAE, bigG alone as
    embedder 0. Order: UNet, VAE (sd15_manifest.json's), text encoders, as the SD 1.x/2.x manifests."""
    vae = {k: v for k, v in _read("sd15_manifest.json").items() if k.startswith(VAE)}
    base = sgm_unet(320, [1, 2, 4], [0, 2, 10], 10, 2048, adm_in_channels=2816)
    base.update(vae)
    base.update(clip_text(SDXL_CLIP_L, 768, 12, 3072))
    base.update(open_clip_text(1280, 32, mlp=5120, prefix=SDXL_BIGG))
    refiner = sgm_unet(384, [1, 2, 4, 4], [0, 4, 4, 0], 4, 1280, adm_in_channels=2560)
    refiner.update(vae)
    refiner.update(open_clip_text(1280, 32, mlp=5120, prefix=REFINER_BIGG))
    return base, refiner


def tiny_sdxl_manifests() -> tuple:
    """The tiny SDXL presets, in the names sdtorch loads by: UNet (32, [1, 2], depth [0, 2], middle 2,
    8-channel heads, linear projections, time embedding 32 -> 128, label_emb from 40 pooled + 6 (refiner:
    5) x 8 Fourier features), the tiny preset's VAE (tiny-manifest.json's first_stage_model.*), then
    CLIP 0 (32 wide, 2 layers, mlp 64; base only) and the second CLIP with its projection (40, 2 layers,
    mlp 80, text_projection [40, 40]), transformers' names. Context 72 = 32 + 40 (refiner: 40)."""
    vae = {k: v for k, v in json.loads((FIXTURES / "tiny-manifest.json").read_text()).items() if k.startswith(VAE)}
    base = sgm_unet(32, [1, 2], [0, 2], 2, 72, adm_in_channels=40 + 6 * 8)
    base.update(vae)
    base.update(clip_text("conditioner.embedders.0.transformer.", 32, 2, 64))
    base.update(clip_text("conditioner.embedders.1.transformer.", 40, 2, 80, projection=40))
    refiner = sgm_unet(32, [1, 2], [0, 2], 2, 40, adm_in_channels=40 + 5 * 8)
    refiner.update(vae)
    refiner.update(clip_text("conditioner.embedders.0.transformer.", 40, 2, 80, projection=40))
    return base, refiner


# diffusers' UNet2DConditionModel configs of these UNets (the real repos' unet/config.json values that matter)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280],
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], attention_head_dim=[5, 10, 20],
                 transformer_layers_per_block=[1, 2, 10], cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, norm_num_groups=32)
SDXL_REFINER_UNET = dict(SDXL_UNET, block_out_channels=[384, 768, 1536, 1536],
                         down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                         up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                         attention_head_dim=[6, 12, 24, 24], transformer_layers_per_block=4, cross_attention_dim=1280,
                         projection_class_embeddings_input_dim=2560)
TINY_SDXL_UNET = dict(SDXL_UNET, sample_size=32, block_out_channels=[32, 64], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                      up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], attention_head_dim=[4, 8],
                      transformer_layers_per_block=[1, 2], cross_attention_dim=72, addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=88)
TINY_SDXL_REFINER_UNET = dict(TINY_SDXL_UNET, cross_attention_dim=40, projection_class_embeddings_input_dim=80)


def check_unet_manifest(manifest: dict, unet_cfg: dict) -> int:
    """diffusers' own LDM -> diffusers conversion of the manifest's UNet keys gives exactly the tensors (names
    and shapes) of UNet2DConditionModel(**unet_cfg), built on the meta device."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
    fake = {k: torch.empty(v, device="meta") for k, v in manifest.items() if k.startswith(UNET)}
    conv = {k: list(v.shape) for k, v in convert_ldm_unet_checkpoint(fake, unet_cfg).items()}
    want = {k: list(v.shape) for k, v in unet.state_dict().items()}
    assert conv == want, sorted(set(conv.items()) ^ set((k, tuple(v)) for k, v in want.items()))[:10]
    return len(want)


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


_ST_DTYPES = {torch.int64: ("I64", 3), torch.float32: ("F32", 2), torch.float16: ("F16", 1)}  # name, sort rank


def save_streaming(path: pathlib.Path, manifest: dict, seed: int, extras: dict, metadata: dict):
    """The fp16 file save_file(half(draw(manifest, seed)) | extras, metadata=metadata) would write, byte for
    byte, without holding the model: the header is known from the shapes, so each tensor is drawn, cast and
    written at its place (safetensors' layout: data ordered by dtype, widest first, then by name; JSON header
    in that order after __metadata__, padded with spaces to 8 bytes). Peak memory: the largest tensor."""
    import numpy as np

    entries = {k: (torch.float16, list(v)) for k, v in manifest.items()}
    entries.update({k: (v.dtype, list(v.shape)) for k, v in extras.items()})
    order = sorted(entries, key=lambda k: (-_ST_DTYPES[entries[k][0]][1], k))
    header, pos = {"__metadata__": metadata}, 0
    for k in order:
        dtype, shape = entries[k]
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[k] = {"dtype": _ST_DTYPES[dtype][0], "shape": shape, "data_offsets": [pos, pos + size]}
        pos += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    start = 8 + len(text)
    with temporary(path) as tmp, open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.truncate(start + pos)

        def put(key, t):
            f.seek(start + header[key]["data_offsets"][0])
            f.write(np.ascontiguousarray(t.numpy()).tobytes())

        for key, t in draws(manifest, seed):
            put(key, t.half())
        for key, t in extras.items():
            put(key, t)


# name -> (file, manifest, seed, SD 1.x CLIP extras?); None manifest = the file shares sd21-v's draw
FILES = {
    "sd21-v": ("sd21-v-random-1234.fp16.safetensors", lambda: _read("sd2_manifest.json"), 1234, False),
    "sd21-base": ("sd21-base-random-1234.fp16.ckpt", None, 1234, False),
    "sd15-inpaint": ("sd15-inpaint-random-1234.fp16.safetensors", lambda: inpainting(_read("sd15_manifest.json")), 1234, True),
    "sd2-inpaint": ("sd2-inpaint-random-1234.fp16.safetensors", lambda: inpainting(_read("sd2_manifest.json")), 1234, False),
    "vae": ("vae-random-4321.fp16.safetensors", lambda: _read("vae_manifest.json"), 4321, None),
    # drawn and written tensor by tensor (save_streaming): fp32 in memory would be 14 / 12 GB
    "sdxl": ("sdxl-base-random-1234.fp16.safetensors", lambda: _read("sdxl_manifest.json"), 1234, "sdxl"),
    "sdxl-refiner": ("sdxl-refiner-random-1234.fp16.safetensors", lambda: _read("sdxl_refiner_manifest.json"), 1234, "sdxl"),
}


def sdxl_extras(name: str) -> dict:
    """What the SDXL files carry besides the model: only CLIP ViT-L's position_ids (int64) in the base."""
    return {SDXL_CLIP_L + "text_model.embeddings.position_ids": torch.arange(77).unsqueeze(0)} if name == "sdxl" else {}


def state_dict(name: str) -> dict:
    _, manifest, seed, sd1_clip = FILES["sd21-v" if name == "sd21-base" else name]
    sd = draw(manifest(), seed)
    if sd1_clip is not None:
        sd.update(extras(sd1_clip))
    return half(sd)


def save(name: str, sd: dict, path: pathlib.Path):
    from safetensors.torch import save_file

    with temporary(path) as tmp:
        if name == "sd21-base":
            with open(tmp, "wb") as f:  # through a file object the zip's folder is "archive/", as in real .ckpt files
                torch.save({"state_dict": sd, "global_step": 875000, "epoch": 0}, f)
        else:
            save_file(sd, str(tmp), metadata={"format": "pt"})


def write(out_dir: pathlib.Path, names) -> list:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, cached = [], {}
    for name in names:
        path = out_dir / FILES[name][0]
        paths.append(path)
        if path.exists():
            continue
        start = time.time()
        if FILES[name][3] == "sdxl":
            _, manifest, seed, _ = FILES[name]
            manifest = manifest()
            save_streaming(path, manifest, seed, sdxl_extras(name), {"format": "pt"})
            params = sum(math.prod(v) for v in manifest.values())
            print(f"{path.name}: {params / 1e6:.1f}M values, {path.stat().st_size / 1e9:.2f} GB, {time.time() - start:.1f} s", flush=True)
            continue
        key = "sd2" if name in ("sd21-v", "sd21-base") else name
        sd = cached.pop(key, None) or state_dict(name)
        save(name, sd, path)
        if key == "sd2" and {"sd21-v", "sd21-base"} <= set(names):
            cached[key] = sd  # the other of the pair is the same tensors
        params = sum(math.prod(v.shape) for v in sd.values())
        print(f"{path.name}: {params / 1e6:.1f}M values, {path.stat().st_size / 1e9:.2f} GB, {time.time() - start:.1f} s", flush=True)
    return paths


def write_sdxl_manifests():
    """sdxl_manifest.json, sdxl_refiner_manifest.json and the tiny presets' test/fixtures/tiny-sdxl-manifest.json,
    tiny-sdxl-refiner-manifest.json; first checks the generator against tiny-manifest.json (order included)
    and, when diffusers is importable, every UNet against diffusers' conversion (check_unet_manifest)."""
    tiny = json.loads((FIXTURES / "tiny-manifest.json").read_text())
    assert list(sgm_unet(32, [1, 2], [1, 1], 1, 32, linear=False).items()) == [(k, v) for k, v in tiny.items() if k.startswith(UNET)]
    assert list(clip_text("cond_stage_model.transformer.", 32, 2, 64).items()) == [(k, v) for k, v in tiny.items() if k.startswith("cond_stage")]
    base, refiner = sdxl_manifests()
    tiny_base, tiny_refiner = tiny_sdxl_manifests()
    try:
        import diffusers  # noqa: F401
        for m, cfg in ((base, SDXL_UNET), (refiner, SDXL_REFINER_UNET), (tiny_base, TINY_SDXL_UNET), (tiny_refiner, TINY_SDXL_REFINER_UNET)):
            check_unet_manifest(m, cfg)
        print("UNet manifests: diffusers' conversion gives exactly UNet2DConditionModel's tensors")
    except ImportError:
        print("diffusers not importable (PYTHONPATH=.../diffusers/src): UNet manifests not checked against it")
    _write_manifest("sdxl_manifest.json", base)
    _write_manifest("sdxl_refiner_manifest.json", refiner)
    for name, m in (("tiny-sdxl-manifest.json", tiny_base), ("tiny-sdxl-refiner-manifest.json", tiny_refiner)):
        (FIXTURES / name).write_text(json.dumps(m, separators=(",", ":")))  # as tiny-manifest.json
    print(f"sdxl_manifest.json: {len(base)}, sdxl_refiner_manifest.json: {len(refiner)}, tiny-sdxl-manifest.json: "
          f"{len(tiny_base)}, tiny-sdxl-refiner-manifest.json: {len(tiny_refiner)} tensors")


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
        write_sdxl_manifests()
    elif a.out_dir is None:
        ap.error("OUT_DIR is required")
    else:
        for p in write(a.out_dir, a.only or list(FILES)):
            print(p)
