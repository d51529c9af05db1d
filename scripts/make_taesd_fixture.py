#!/usr/bin/env python3
"""Random TAESDs and what diffusers' AutoencoderTiny computes with them, for test/taesd.test.ts.

Two TAESDs with random weights (torch.manual_seed; convolution weights N(0, 1)·sqrt(2 / fan_in)·0.7,
biases N(0, 0.05²), the decoder's last bias 0.4 higher so that its images spread around 0, across
both ends of [-1, 1]), rounded to float16 and saved in float16; every reference is computed in float32
from those rounded weights:

- "sd": AutoencoderTiny() itself, the published structure (64 wide; encoder Blocks 1, 3, 3, 3; decoder
  3, 3, 3, 1; 8 pixels per latent cell), in the published layout, as madebyollin/taesd ships it:
  taesd/taesd_encoder.safetensors ("0.weight", "1.conv.0.weight", ... = diffusers' encoder.layers.N)
  and taesd/taesd_decoder.safetensors (diffusers' decoder.layers.N as N + 1: the published decoder's
  layer 0 is the parameter-free Clamp; diffusers' scripts/convert_tiny_autoencoder_to_diffusers.py).
- "tiny": the structure of the tiny test preset's VAE (2 levels: 2 pixels per latent cell), 16 wide,
  encoder Blocks 1, 2, decoder 2, 1, in both layouts: tiny-taesd/taesd_{encoder,decoder}.safetensors,
  and tiny-taesd-diffusers/ as AutoencoderTiny.save_pretrained writes it (config.json,
  diffusion_pytorch_model.safetensors, diffusers' own names).

taesd-reference.safetensors holds, for each: `<name>.latents` (UNet-space latents, N(0, 1)) and
`<name>.decoded` = vae.decode(latents).sample; `<name>.images` (uniform in [-1, 1]) and `<name>.encoded` =
vae.encode(images).latents. And one whole run, `pipeline.images` (uint8 [1, 32, 32, 3]): diffusers'
StableDiffusionPipeline on the tiny checkpoint (scripts/make_tiny_fixture.py) with the tiny TAESD as its
vae, prompt "a cat", negative "", EulerDiscreteScheduler (SD 1.5 config), 4 steps, CFG 7.5, seed 21,
32x32, output_type "pil". The pipeline divides the latents by vae.config.scaling_factor, 1.0 for
AutoencoderTiny (asserted): TAESD decodes the UNet's latents as they are.

Usage (diffusers source checkout, never part of this repo):
    PYTHONPATH=/path/to/diffusers/src python3 scripts/make_taesd_fixture.py
"""
import os
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_inpaint_fixture import EMPTY_IDS, PROMPT_IDS, embed, networks  # noqa: E402
from make_sampler_fixture import SAMPLERS, SD15_CONFIG  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIX = ROOT / "test" / "fixtures"
TINY = dict(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
            num_encoder_blocks=(1, 2), num_decoder_blocks=(2, 1))


def random_taesd(seed, **config):
    """AutoencoderTiny(**config) with the random weights above, float16-rounded (kept in float32)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    vae = AutoencoderTiny(**config).eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.dim() == 4:
                p.copy_(torch.randn_like(p) * (2 / p[0].numel()) ** 0.5 * 0.7)
            else:
                p.copy_(torch.randn_like(p) * 0.05)
        vae.decoder.layers[-1].bias.add_(0.4)
        for p in vae.parameters():
            p.copy_(p.half().float())
    return vae


def published(vae, half):
    """One half in the published layout: diffusers' decoder.layers.N is the published decoder's N + 1."""
    prefix, shift = f"{half}.layers.", 1 if half == "decoder" else 0
    out = {}
    for k, v in vae.state_dict().items():
        if k.startswith(prefix):
            index, rest = k[len(prefix):].split(".", 1)
            out[f"{int(index) + shift}.{rest}"] = v.half().contiguous()
    return out


def references(vae, name, latent_hw, seed):
    g = torch.Generator().manual_seed(seed)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = latent_hw
    latents = torch.randn(2, 4, h, w, generator=g)
    images = torch.rand(2, 3, h * scale, w * scale, generator=g) * 2 - 1
    with torch.no_grad():
        decoded = vae.decode(latents).sample
        encoded = vae.encode(images).latents
    print(f"{name}: decoded mean {decoded.mean():.3f} std {decoded.std():.3f} range [{decoded.min():.2f}, {decoded.max():.2f}]; "
          f"encoded std {encoded.std():.3f}")
    return {f"{name}.latents": latents, f"{name}.decoded": decoded, f"{name}.images": images, f"{name}.encoded": encoded}


def pipeline_run(taesd):
    """diffusers' txt2img on the tiny checkpoint with the tiny TAESD as its VAE (see the module doc)."""
    from diffusers import StableDiffusionPipeline

    assert taesd.config.scaling_factor == 1.0 and taesd.config.shift_factor == 0.0
    unet, _, clip = networks(4)
    cls, overrides = SAMPLERS["euler"]
    pipe = StableDiffusionPipeline(vae=taesd, text_encoder=clip, tokenizer=None, unet=unet,
                                   scheduler=cls.from_config(SD15_CONFIG, **overrides), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 2
    with torch.no_grad():
        image = pipe(prompt_embeds=embed(clip, PROMPT_IDS), negative_prompt_embeds=embed(clip, EMPTY_IDS), height=32, width=32,
                     num_inference_steps=4, guidance_scale=7.5, generator=torch.Generator().manual_seed(21), output_type="pil").images[0]
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())[None]


def main():
    from diffusers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    sd = random_taesd(1, **{})
    tiny = random_taesd(2, **TINY)
    for folder, vae in (("taesd", sd), ("tiny-taesd", tiny)):
        (FIX / folder).mkdir(parents=True, exist_ok=True)
        for half in ("encoder", "decoder"):
            save_file(published(vae, half), str(FIX / folder / f"taesd_{half}.safetensors"))
    tiny.half().save_pretrained(str(FIX / "tiny-taesd-diffusers"), safe_serialization=True)
    tiny.float()

    out = {**references(sd, "sd", (8, 12), 3), **references(tiny, "tiny", (6, 10), 4), "pipeline.images": pipeline_run(tiny)}
    save_file({k: v.contiguous() for k, v in out.items()}, str(FIX / "taesd-reference.safetensors"))
    print("wrote", ", ".join(f"{f}/" for f in ("taesd", "tiny-taesd", "tiny-taesd-diffusers")), "and taesd-reference.safetensors")


if __name__ == "__main__":
    main()
