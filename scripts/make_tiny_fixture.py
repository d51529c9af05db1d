#!/usr/bin/env python3
"""Reference outputs of the `tiny` preset networks, computed by diffusers/transformers.

The tiny checkpoint is the fixture recipe (see make_random_sd15.py) over test/fixtures/tiny-manifest.json
(the tiny preset's tensor names and shapes, in the addon's order), seed 1234; test/tiny.ts draws the
same weights. Its diffusers/transformers twins are built with the same structure at toy widths and
filled through diffusers' own LDM -> diffusers key conversion.

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_tiny_fixture.py
Writes test/fixtures/tiny-reference.safetensors.
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

from make_random_sd15 import draw

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIX = ROOT / "test" / "fixtures"


def tiny_state_dict(seed=1234):
    return draw(json.loads((FIX / "tiny-manifest.json").read_text()), seed)


def tiny_components(sd=None, in_channels=4):
    """The tiny preset's diffusers/transformers twins (float32),
    filled with `sd` (default: the tiny checkpoint); in_channels 9 for the tiny inpainting UNet."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    sd = tiny_state_dict() if sd is None else sd
    unet_cfg = dict(sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=2, block_out_channels=[32, 64],
                    down_block_types=["CrossAttnDownBlock2D"] * 2, up_block_types=["CrossAttnUpBlock2D"] * 2,
                    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    unet = UNet2DConditionModel(**unet_cfg).eval()
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, unet_cfg), strict=True)
    vae_cfg = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=[32, 64],
                   down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                   norm_num_groups=32, sample_size=16)
    vae = AutoencoderKL(**vae_cfg).eval()
    vae.load_state_dict(convert_ldm_vae_checkpoint(sd, vae_cfg), strict=True)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                                        max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")).eval()
    prefix = "cond_stage_model.transformer.text_model."  # transformers 5 keys start below text_model
    clip_sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    missing, unexpected = clip.load_state_dict(clip_sd, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return unet, vae, clip


def main():
    unet, vae, clip = tiny_components()

    g = torch.Generator().manual_seed(7)
    out = {}
    with torch.no_grad():
        ids = torch.randint(0, 49406, (2, 77), generator=g)
        ids[:, 0], ids[:, 9:] = 49406, 49407
        out["clip.ids"], out["clip.out"] = ids, clip(ids).last_hidden_state
        for name, shape in {"unet": [2, 4, 8, 8], "unet2": [1, 4, 5, 7]}.items():
            x = torch.randn(shape, generator=g)
            t = torch.tensor([981.0, 1.0][: shape[0]])
            ctx = torch.randn(shape[0], 77, 32, generator=g)
            out[f"{name}.x"], out[f"{name}.t"], out[f"{name}.ctx"] = x, t, ctx
            out[f"{name}.out"] = unet(x, t, encoder_hidden_states=ctx).sample
        image = torch.rand(1, 3, 16, 24, generator=g) * 2 - 1
        dist = vae.encode(image).latent_dist
        out["vae.image"], out["vae.mean"], out["vae.logvar"] = image, dist.mean, dist.logvar
        z = torch.randn(1, 4, 8, 12, generator=g)
        out["vae.z"], out["vae.decoded"] = z, vae.decode(z).sample
        # Tiled: 16-pixel / 8-cell tiles (the tiny VAE halves), overlap 0.25, on inputs of several tiles.
        vae.enable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size = 16, 8
        image = torch.rand(1, 3, 40, 56, generator=g) * 2 - 1
        dist = vae.encode(image).latent_dist
        out["vae_tiled.image"], out["vae_tiled.mean"], out["vae_tiled.logvar"] = image, dist.mean, dist.logvar
        z = torch.randn(1, 4, 20, 28, generator=g)
        out["vae_tiled.z"], out["vae_tiled.decoded"] = z, vae.decode(z).sample
        out["vae_tiled.untiled"] = vae.decode(z[:, :, :8, :8]).sample  # fits one tile: decoded whole
    save_file({k: v.contiguous() for k, v in out.items()}, str(FIX / "tiny-reference.safetensors"))
    print("wrote", FIX / "tiny-reference.safetensors")


if __name__ == "__main__":
    main()
