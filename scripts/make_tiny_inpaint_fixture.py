#!/usr/bin/env python3
"""diffusers' inpainting on the `tiny` preset: the same pipeline code as sd2-reference's inpaint cases,
on networks small enough for a test to run every noise-draw order in a second.

  tiny-inpaint  the fixture recipe over tiny-manifest.json with input_blocks.0.0.weight [32,9,3,3],
                seed 1234 (the inpainting file's rule of make_random_checkpoints.py at tiny widths)
  tiny          the tiny checkpoint itself (a 4-channel UNet: the mask is applied to the latents)

Both in diffusers' StableDiffusionInpaintPipeline (make_tiny_fixture.tiny_components, float32, SD 1.5
tokenizer and scheduler config, vae_scale_factor 2: the tiny VAE halves), image img2img-init.png and
the masks of make_sd2_reference.py at 64x64 (latents 32x32), prompt/negative/guidance as there.

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_tiny_inpaint_fixture.py
  (after make_sd2_reference.py, which writes the masks)
Writes test/fixtures/tiny-inpaint-reference.safetensors and tiny-inpaint-reference.json.
"""
import json
import pathlib
import sys
import tempfile

import torch
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from diffusers_configs import SD15_SCHEDULER  # noqa: E402
from make_tiny_fixture import tiny_components  # noqa: E402
from make_random_sd15 import draw  # noqa: E402
from make_sd2_reference import (FIX, MASK, MASK_NOTES, MASK_SMALL, RNG_NOTES, capture, check_draw_order, quiet,  # noqa: E402
                                run_case)
from make_tokenizer_fixture import build_tokenizer  # noqa: E402

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
IMAGE = dict(image="img2img-init.png", width=64, height=64, steps=10, maskBlur=0)
CASES = [
    dict(key="inpaint.tinyinpaint.euler_a.s100", model="tiny-inpaint", sampler="euler_a", seed=61, mask=MASK["file"], strength=1.0, **IMAGE),
    dict(key="inpaint.tinyinpaint.ddim.s075", model="tiny-inpaint", sampler="ddim", seed=62, mask=MASK["file"], strength=0.75, **IMAGE),
    dict(key="inpaint.tinyinpaint.euler.mask32x48", model="tiny-inpaint", sampler="euler", seed=63, mask=MASK_SMALL["file"],
         strength=1.0, **IMAGE),
    dict(key="inpaint4ch.tiny.euler_a.s075", model="tiny", sampler="euler_a", seed=64, mask=MASK["file"], strength=0.75, **IMAGE),
    dict(key="inpaint4ch.tiny.ddim.s100", model="tiny", sampler="ddim", seed=65, mask=MASK["file"], strength=1.0, **IMAGE),
]


def main():
    import diffusers
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline
    from diffusers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    manifest = json.loads((FIX / "tiny-manifest.json").read_text())
    manifest[CONV_IN] = [manifest[CONV_IN][0], 9, *manifest[CONV_IN][2:]]
    out, docs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(pathlib.Path(tmp))
        tok.model_max_length = 77
        for model, sd, channels in (("tiny-inpaint", draw(manifest, 1234), 9), ("tiny", None, 4)):
            unet, vae, clip = tiny_components(sd, channels)
            pipe = quiet(StableDiffusionInpaintPipeline(
                vae=vae, text_encoder=clip, tokenizer=tok, unet=unet, scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False))
            assert pipe.vae_scale_factor == 2
            if channels == 9:
                g = torch.Generator().manual_seed(2024)
                with torch.no_grad():
                    x, t = torch.randn(2, 4, 8, 12, generator=g), torch.tensor([981.0, 1.0])
                    ctx = torch.randn(2, 77, 32, generator=g)
                    concat = torch.cat([(torch.rand(2, 1, 8, 12, generator=g) > 0.5).float(),
                                        torch.randn(2, 4, 8, 12, generator=g)], 1)
                    out.update({"tinyinpaint.unet.x": x, "tinyinpaint.unet.t": t, "tinyinpaint.unet.ctx": ctx,
                                "tinyinpaint.unet.concat": concat})
                    out["tinyinpaint.unet.out"] = unet(torch.cat([x, concat], 1), t, encoder_hidden_states=ctx).sample
            for case in CASES:
                if case["model"] == model:
                    capture(pipe, out, case["key"])
                    run_case(pipe, case, out, docs, "epsilon")
                    check_draw_order(pipe, case, out)
    doc = dict(
        about="diffusers StableDiffusionInpaintPipeline on the tiny preset; made by scripts/make_tiny_inpaint_fixture.py",
        weights={"tiny-inpaint": f"tiny-manifest.json with {CONV_IN} [32,9,3,3], make_random_sd15.draw seed 1234",
                 "tiny": "the tiny checkpoint (test/tiny.ts randomTensors())"},
        entries={"tinyinpaint.unet.*": "x [2,4,8,12], t [981, 1], ctx [2,77,32], concat [2,5,8,12] (mask, latents) from "
                                      "manual_seed(2024); out = UNet(cat(x, concat), t, ctx).sample",
                 "<case key>": "final latents; <key>.mask_pixels / .latent_mask / .masked_image_latents / .start as in "
                               "sd2-reference.json"},
        tolerances="components rel err < 1e-4, final latents < 1e-3 (fp32 CPU)",
        cases=docs, rng=RNG_NOTES, mask={k: v for k, v in MASK_NOTES.items() if k != "resize_margin"},
        made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__),
    )
    save_file({k: v.contiguous() for k, v in sorted(out.items())}, str(FIX / "tiny-inpaint-reference.safetensors"))
    (FIX / "tiny-inpaint-reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(out)} tensors -> {FIX / 'tiny-inpaint-reference.safetensors'}")


if __name__ == "__main__":
    main()
