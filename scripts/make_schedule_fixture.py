#!/usr/bin/env python3
"""Reference numbers of diffusers' schedules for test/schedules.test.ts: timestep spacing, zero
terminal SNR, v-prediction and guidance rescale.

- tables: the training ᾱ_t of SD's scheduler config, plain, with rescale_betas_zero_snr as
  DDIMScheduler keeps it (ᾱ_999 = 0) and as EulerDiscreteScheduler keeps it (ᾱ_999 = 2^-24); the
  rescaled betas, and torch's float32 √ᾱ they are made from (not always correctly rounded);
- cases: scheduler loops run as StableDiffusionPipeline / StableDiffusionImg2ImgPipeline run them
  (same order of draws as scripts/make_sampler_fixture.py), for every sampler x timestep_spacing x
  rescale_betas_zero_snr (where the class has it) x karras (where it has it) x prediction_type, with
  the toy model of make_sampler_fixture.py read as epsilon or as v_prediction; then, appended so
  that those stay as they were: the k-diffusion loops of make_sampler_fixture.py (Euler a with
  karras, DPM++ 2S a, DPM++ SDE, DPM++ 3M SDE) on EulerDiscreteScheduler's schedule with the same
  options, and the schedules 'exponential' and 'beta' for every sampler that takes them, per spacing
  and prediction;
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
from make_sampler_fixture import (  # noqa: E402
    SAMPLERS,
    SCHEDULE_OPTIONS,
    SD15_CONFIG,
    euler_schedule,
    f32_b64,
    fixed,
    run_kdiffusion,
    run_scheduler,
    supports,
)

# The samplers the first loop covers, as it always has; LCMScheduler and DEISMultistepScheduler after them.
ORIGINAL = ["ddpm", "ddim", "pndm", "euler", "euler_a", "heun", "lms", "dpm2", "dpm2_a", "dpmpp_2m", "dpmpp_2m_sde", "unipc"]
# The k-diffusion loops (Euler a only where its diffusers class lacks the schedule)
KDIFFUSION = {"euler_a": ["karras"], "dpmpp_2s_a": ["default", "karras"], "dpmpp_sde": ["default", "karras"], "dpmpp_3m_sde": ["default", "karras"]}

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
    config.update(SCHEDULE_OPTIONS[schedule])
    return cls.from_config(config)


def euler_options(schedule, spacing, zsnr):
    """EulerDiscreteScheduler's options for a k-diffusion loop's σ list."""
    return {"timestep_spacing": spacing, **({"rescale_betas_zero_snr": True} if zsnr else {}), **SCHEDULE_OPTIONS[schedule]}


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

    def add(sampler, schedule, spacing, zsnr, prediction, modes=MODES):
        nonlocal seed
        for mode, steps, strength in modes:
            seed += 1
            if sampler in SAMPLERS and supports(sampler, schedule):
                scheduler = make(sampler, schedule, spacing, zsnr, prediction)
                seen, start_norm, final = run_scheduler(scheduler, mode, SHAPE, steps, strength, seed, c, image)
            else:
                scheduler = euler_schedule({**euler_options(schedule, spacing, zsnr), "prediction_type": prediction})
                seen, start_norm, final = run_kdiffusion(sampler, scheduler, mode, SHAPE, steps, strength, seed, c, image, prediction)
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

    def predictions(sampler, zsnr):
        # zero terminal SNR is made for v models; epsilon only where the class clamps the last ᾱ
        return ["v_prediction"] if zsnr and sampler in ("ddim", "ddpm", "lcm") else ["epsilon", "v_prediction"]

    for sampler in ORIGINAL + ["lcm", "deis"]:
        for spacing in SPACINGS:
            for zsnr in [False] + ([True] if has_option(sampler, "rescale_betas_zero_snr") else []):
                for schedule in ["default"] + (["karras"] if has_option(sampler, "use_karras_sigmas") else []):
                    for prediction in predictions(sampler, zsnr):
                        add(sampler, schedule, spacing, zsnr, prediction)
    for sampler, schedules in KDIFFUSION.items():
        for spacing in SPACINGS:
            # on EulerDiscreteScheduler's schedule, which has rescale_betas_zero_snr
            for zsnr in [False, True]:
                for schedule in schedules:
                    for prediction in predictions(sampler, zsnr):
                        add(sampler, schedule, spacing, zsnr, prediction)
    for sampler in ORIGINAL + ["deis"] + [k for k in KDIFFUSION if k not in SAMPLERS]:
        for schedule in ["exponential", "beta"]:
            if sampler in SAMPLERS and not supports(sampler, schedule) and sampler not in KDIFFUSION:
                continue
            for spacing in SPACINGS:
                for prediction in ["epsilon", "v_prediction"]:
                    add(sampler, schedule, spacing, False, prediction, MODES[:2])

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
