#!/usr/bin/env python3
"""Reference numbers of diffusers' schedules for test/schedules.test.ts: timestep spacing, zero
terminal SNR, v-prediction and guidance rescale.

- tables: the training ᾱ_t of SD's scheduler config, plain, with rescale_betas_zero_snr as
  DDIMScheduler keeps it (ᾱ_999 = 0) and as EulerDiscreteScheduler keeps it (ᾱ_999 = 2^-24); the
  rescaled betas, and torch's float32 √ᾱ they are made from (not always correctly rounded);
- cases: scheduler loops run as StableDiffusionPipeline / StableDiffusionImg2ImgPipeline run them
  (same order of draws as scripts/make_sampler_fixture.py), for every sampler x timestep_spacing x
  rescale_betas_zero_snr (where the class has it) x karras (where it has it) x prediction_type, with
  the toy model of make_sampler_fixture.py read as epsilon or as v_prediction;
- rescale: diffusers' rescale_noise_cfg(cfg, cond, φ) on fixed tensors.

Usage (diffusers source checkout, never part of this repo):
    PYTHONPATH=/path/to/diffusers/src python3 scripts/make_schedule_fixture.py test/fixtures/schedule-reference.json
"""

import argparse
import inspect
import json
import os
import sys

import numpy as np
import torch
import diffusers
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr
from diffusers.utils import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_sampler_fixture import SAMPLERS, SD15_CONFIG, f32_b64, fixed, run_scheduler  # noqa: E402

SHAPE = [1, 4, 4, 4]
SPACINGS = ["leading", "linspace", "trailing"]
# (mode, steps, strength)
MODES = [("txt2img", 10, 1.0), ("img2img", 10, 0.6), ("txt2img", 3, 1.0)]


def has_option(sampler: str, name: str) -> bool:
    return name in inspect.signature(SAMPLERS[sampler][0].__init__).parameters


def make(sampler, schedule, spacing, zsnr, prediction):
    cls, overrides = SAMPLERS[sampler]
    config = {**SD15_CONFIG, **overrides, "timestep_spacing": spacing, "prediction_type": prediction}
    if zsnr:
        config["rescale_betas_zero_snr"] = True
    if schedule == "karras":
        config["use_karras_sigmas"] = True
    return cls.from_config(config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="JSON file to write")
    args = parser.parse_args()
    logging.set_verbosity_error()
    torch.set_num_threads(1)

    c = fixed(SHAPE, 2001)
    image = fixed(SHAPE, 2002, 0.8)
    plain = SAMPLERS["ddim"][0].from_config(SD15_CONFIG)
    tables = {
        "default": plain.alphas_cumprod,
        # torch's float32 sqrt of ᾱ, which rescale_zero_terminal_snr takes, and its result
        "sqrtAlphasCumprod": plain.alphas_cumprod.sqrt(),
        "betasZeroSnr": rescale_zero_terminal_snr(plain.betas),
        "zeroSnr": SAMPLERS["ddim"][0].from_config(SD15_CONFIG, rescale_betas_zero_snr=True).alphas_cumprod,
        "zeroSnrClamped": SAMPLERS["euler"][0].from_config(SD15_CONFIG, rescale_betas_zero_snr=True).alphas_cumprod,
    }

    cases = []
    seed = 500
    for sampler in SAMPLERS:
        for spacing in SPACINGS:
            for zsnr in [False] + ([True] if has_option(sampler, "rescale_betas_zero_snr") else []):
                for schedule in ["default"] + (["karras"] if has_option(sampler, "use_karras_sigmas") else []):
                    # zero terminal SNR is made for v models; epsilon only where the class clamps the last ᾱ
                    predictions = ["epsilon", "v_prediction"]
                    if zsnr and sampler in ("ddim", "ddpm"):
                        predictions = ["v_prediction"]
                    for prediction in predictions:
                        for mode, steps, strength in MODES:
                            seed += 1
                            scheduler = make(sampler, schedule, spacing, zsnr, prediction)
                            seen, start_norm, final = run_scheduler(scheduler, mode, SHAPE, steps, strength, seed, c, image)
                            assert torch.isfinite(final).all(), (sampler, spacing, zsnr, schedule, prediction, mode)
                            cases.append(
                                dict(
                                    sampler=sampler,
                                    schedule=schedule,
                                    spacing=spacing,
                                    zeroTerminalSnr=zsnr,
                                    prediction="v" if prediction == "v_prediction" else "epsilon",
                                    mode=mode,
                                    steps=steps,
                                    strength=strength,
                                    seed=seed,
                                    timesteps=seen,
                                    startNorm=start_norm,
                                    final=f32_b64(final),
                                )
                            )

    cond = fixed([2, 4, 3, 5], 2003)
    uncond = fixed([2, 4, 3, 5], 2004, 0.5)
    rescale = []
    for scale, phi in [(7.5, 0.7), (3.0, 1.0), (7.5, 0.0)]:
        cfg = uncond + scale * (cond - uncond)
        rescale.append(dict(scale=scale, phi=phi, out=f32_b64(rescale_noise_cfg(cfg, cond, guidance_rescale=phi))))

    doc = dict(
        about="diffusers schedules (spacing, zero terminal SNR, v) and rescale_noise_cfg; made by scripts/make_schedule_fixture.py",
        model="out(x_in, t) = 0.5 * tanh(x_in) + (0.2 * t / 1000) * c, read as epsilon or v",
        config=SD15_CONFIG,
        shape=SHAPE,
        made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        tensors={k: dict(shape=list(v.shape), data=f32_b64(v)) for k, v in dict(c=c, image=image, cond=cond, uncond=uncond).items()},
        tables={k: f32_b64(v) for k, v in tables.items()},
        rescale=rescale,
        cases=cases,
    )
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=0)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
