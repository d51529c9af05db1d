#!/usr/bin/env python3
"""Reference outputs of diffusers' inpainting for test/inpaint.test.ts.

- mask preprocessing: a 37x23 grey mask PNG and a 48x32 RGB image PNG (test/fixtures/inpaint/),
  read with diffusers.utils.load_image and prepared as StableDiffusionInpaintPipeline prepares
  them for height 32, width 48: VaeImageProcessor(do_normalize=False, do_binarize=True,
  do_convert_grayscale=True).preprocess (the mask bits), image_processor.preprocess, the masked
  image init_image * (mask < 0.5), and the mask at latent size (F.interpolate, nearest);
- whole runs of StableDiffusionInpaintPipeline on the `tiny` checkpoint (scripts/make_tiny_fixture.py)
  with a 4-channel UNet, and on `tiny-inpaint` (the same recipe with input_blocks.0.0.weight
  [32, 9, 3, 3]) with a 9-channel one: prompt "a cat", negative "", CFG 7.5, the prompt embeddings
  computed by the tiny CLIP from the CLIP token ids of the two texts, generator
  torch.Generator().manual_seed(seed), output_type "latent" (final latents) for several schedulers
  and strengths.

Usage (diffusers source checkout, never part of this repo):
    PYTHONPATH=/path/to/diffusers/src python3 scripts/make_inpaint_fixture.py
Writes test/fixtures/inpaint/{image.png,mask.png,reference.json}.
"""
import base64
import json
import os
import pathlib
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_random_sd15 import draw  # noqa: E402
from make_sampler_fixture import SAMPLERS, SD15_CONFIG  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "test" / "fixtures" / "inpaint"
HEIGHT, WIDTH = 32, 48
PROMPT_IDS = [49406, 320, 2368, 49407]  # "a cat"
EMPTY_IDS = [49406, 49407]  # ""
RUNS = [
    # (unet channels, sampler, strength, steps, batch size, seed)
    (4, "euler_a", 1.0, 4, 1, 11),
    (4, "ddim", 0.6, 5, 2, 12),
    (4, "heun", 0.75, 4, 1, 13),
    (4, "dpm2", 1.0, 3, 1, 14),
    (4, "unipc", 1.0, 4, 1, 15),
    (4, "pndm", 0.6, 5, 1, 16),
    (4, "lms", 0.8, 4, 1, 17),
    (9, "euler_a", 1.0, 4, 1, 21),
    (9, "ddim", 0.6, 5, 2, 22),
    (9, "heun", 1.0, 3, 1, 23),
]


def b64(t) -> str:
    return base64.b64encode(np.ascontiguousarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t).tobytes()).decode()


def make_inputs():
    g = torch.Generator().manual_seed(3)
    # a smooth image with some structure
    yy, xx = torch.meshgrid(torch.linspace(0, 1, HEIGHT), torch.linspace(0, 1, WIDTH), indexing="ij")
    rgb = torch.stack([xx, yy, (xx + yy) / 2]) * 200 + torch.rand(3, HEIGHT, WIDTH, generator=g) * 55
    Image.fromarray(rgb.clamp(0, 255).byte().permute(1, 2, 0).numpy(), "RGB").save(OUT / "image.png")
    # a mask of another size: a white disc, a grey ramp around 50% and black elsewhere
    mh, mw = 23, 37
    my, mx = torch.meshgrid(torch.arange(mh, dtype=torch.float32), torch.arange(mw, dtype=torch.float32), indexing="ij")
    disc = ((mx - 22) ** 2 + (my - 10) ** 2 < 36).float() * 255
    ramp = torch.where((mx < 12) & (my > 12), 100 + 6 * mx, torch.zeros_like(mx))
    Image.fromarray(torch.maximum(disc, ramp).clamp(0, 255).byte().numpy(), "L").save(OUT / "mask.png")


def networks(channels: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    manifest = json.loads((ROOT / "test" / "fixtures" / "tiny-manifest.json").read_text())
    if channels == 9:
        manifest["model.diffusion_model.input_blocks.0.0.weight"] = [32, 9, 3, 3]
    sd = draw(manifest, 1234)
    unet_cfg = dict(sample_size=8, in_channels=channels, out_channels=4, layers_per_block=2, block_out_channels=[32, 64],
                    down_block_types=["CrossAttnDownBlock2D"] * 2, up_block_types=["CrossAttnUpBlock2D"] * 2,
                    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    unet = UNet2DConditionModel(**unet_cfg).eval()
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, unet_cfg), strict=True)
    vae_cfg = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=[32, 64],
                   down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=32, sample_size=16)
    vae = AutoencoderKL(**vae_cfg).eval()
    vae.load_state_dict(convert_ldm_vae_checkpoint(sd, vae_cfg), strict=True)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                                        max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")).eval()
    prefix = "cond_stage_model.transformer.text_model."
    clip.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=False)
    object.__setattr__(clip, "text_model", clip)  # transformers 5: the pipeline reads text_model.final_layer_norm
    return unet, vae, clip


def embed(clip, ids):
    row = torch.tensor([ids + [49407] * (77 - len(ids))])
    with torch.no_grad():
        return clip(row).last_hidden_state


def main():
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.image_processor import VaeImageProcessor
    from diffusers.utils import load_image, logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    make_inputs()
    image = load_image(str(OUT / "image.png"))
    mask = load_image(str(OUT / "mask.png"))

    # the tiny VAE halves: vae_scale_factor 2, latents 16 x 24
    factor = 2
    mask_processor = VaeImageProcessor(vae_scale_factor=factor, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    image_processor = VaeImageProcessor(vae_scale_factor=factor)
    mask_condition = mask_processor.preprocess(mask, height=HEIGHT, width=WIDTH)
    init_image = image_processor.preprocess(image, height=HEIGHT, width=WIDTH).to(torch.float32)
    masked_image = init_image * (mask_condition < 0.5)
    latent_mask = torch.nn.functional.interpolate(mask_condition, size=(HEIGHT // factor, WIDTH // factor))

    runs = []
    for channels, sampler, strength, steps, batch, seed in RUNS:
        unet, vae, clip = networks(channels)
        cls, overrides = SAMPLERS[sampler]
        pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=clip, tokenizer=None, unet=unet, scheduler=cls.from_config(SD15_CONFIG, **overrides),
                                              safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            latents = pipe(prompt_embeds=embed(clip, PROMPT_IDS), negative_prompt_embeds=embed(clip, EMPTY_IDS), image=image, mask_image=mask,
                           height=HEIGHT, width=WIDTH, strength=strength, num_inference_steps=steps, guidance_scale=7.5,
                           num_images_per_prompt=batch, generator=torch.Generator().manual_seed(seed), output_type="latent").images
        assert torch.isfinite(latents).all()
        runs.append(dict(channels=channels, sampler=sampler, strength=strength, steps=steps, batchSize=batch, seed=seed,
                         shape=list(latents.shape), latents=b64(latents.float())))

    import diffusers
    doc = dict(
        about="diffusers StableDiffusionInpaintPipeline inputs and runs on the tiny checkpoints; made by scripts/make_inpaint_fixture.py",
        made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__),
        height=HEIGHT, width=WIDTH, promptIds=PROMPT_IDS, emptyIds=EMPTY_IDS,
        maskBits=b64(mask_condition.to(torch.uint8)), maskedImage=b64(masked_image), latentMask=b64(latent_mask.to(torch.uint8)),
        runs=runs,
    )
    (OUT / "reference.json").write_text(json.dumps(doc, indent=0) + "\n")
    print(f"{len(runs)} runs -> {OUT / 'reference.json'}")


if __name__ == "__main__":
    main()
