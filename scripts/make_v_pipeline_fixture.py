#!/usr/bin/env python3
"""Reference runs of diffusers' StableDiffusionPipeline with a v-prediction UNet, for
test/v-prediction.test.ts: the `tiny` checkpoint read as v_prediction, with zero terminal SNR,
timestep spacing and guidance_rescale (prompt "a cat", negative "", CFG 7.5, 32x32, prompt
embeddings from the tiny CLIP as in make_inpaint_fixture.py, output_type "latent").

Usage (diffusers source checkout, never part of this repo):
    PYTHONPATH=/path/to/diffusers/src python3 scripts/make_v_pipeline_fixture.py
Writes test/fixtures/v-pipeline-reference.json.
"""
import json
import os
import pathlib
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_inpaint_fixture import EMPTY_IDS, PROMPT_IDS, b64, embed, networks  # noqa: E402
from make_sampler_fixture import SAMPLERS, SD15_CONFIG  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = [
    # (sampler, steps, timestep_spacing, rescale_betas_zero_snr, guidance_rescale, seed)
    ("euler_a", 4, "trailing", True, 0.7, 31),
    ("ddim", 5, "trailing", True, 0.7, 32),
    ("dpmpp_2m", 4, "linspace", False, 0.0, 33),
    ("pndm", 4, "leading", False, 0.0, 34),
    ("heun", 3, "leading", False, 0.5, 35),
    ("unipc", 4, "trailing", True, 0.0, 36),
]


def main():
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    unet, vae, clip = networks(4)
    runs = []
    for sampler, steps, spacing, zsnr, rescale, seed in RUNS:
        cls, overrides = SAMPLERS[sampler]
        config = {**SD15_CONFIG, **overrides, "prediction_type": "v_prediction", "timestep_spacing": spacing}
        if zsnr:
            config["rescale_betas_zero_snr"] = True
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=None, unet=unet, scheduler=cls.from_config(config),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            latents = pipe(prompt_embeds=embed(clip, PROMPT_IDS), negative_prompt_embeds=embed(clip, EMPTY_IDS), height=32, width=32,
                           num_inference_steps=steps, guidance_scale=7.5, guidance_rescale=rescale,
                           generator=torch.Generator().manual_seed(seed), output_type="latent").images
        assert torch.isfinite(latents).all()
        runs.append(dict(sampler=sampler, steps=steps, spacing=spacing, zeroTerminalSnr=zsnr, rescale=rescale, seed=seed,
                         shape=list(latents.shape), latents=b64(latents.float())))
    import diffusers
    doc = dict(about="diffusers StableDiffusionPipeline, tiny checkpoint as v_prediction; made by scripts/make_v_pipeline_fixture.py",
               made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__), runs=runs)
    out = ROOT / "test" / "fixtures" / "v-pipeline-reference.json"
    out.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"{len(runs)} runs -> {out}")


if __name__ == "__main__":
    main()
