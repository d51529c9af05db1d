#!/usr/bin/env python3
"""Reference trajectories of diffusers' schedulers for test/samplers.test.ts.

For every sampler of DESIGN.md's table and schedule ('default', and 'karras' where the class has
use_karras_sigmas), runs the scheduler loop exactly as StableDiffusionPipeline does (txt2img) and as
StableDiffusionImg2ImgPipeline does (img2img: get_timesteps, set_begin_index, add_noise at the first
timestep), with a deterministic toy model in place of the guided UNet:

    eps(x_in, t) = 0.5 * tanh(x_in) + (0.2 * t / 1000) * c

and records the timesteps the model was called with, the norm of the starting latents and the final
latents. The same torch.Generator (manual_seed(seed)) draws the starting noise and then serves
scheduler.step, as in the pipelines.

Usage (diffusers source checkout, never part of this repo):
    PYTHONPATH=/path/to/diffusers/src python3 scripts/make_sampler_fixture.py test/fixtures/sampler-reference.json
"""

import argparse
import base64
import inspect
import json

import numpy as np
import torch
import diffusers
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils import logging

SD15_CONFIG = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    clip_sample=False,
)

SAMPLERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "dpm2": (KDPM2DiscreteScheduler, {}),
    "dpm2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
}

SHAPE = [1, 4, 8, 8]
BATCH_SHAPE = [2, 4, 4, 6]
# (mode, shape, steps, strength)
CASES = (
    [("txt2img", SHAPE, steps, 1.0) for steps in (1, 2, 3, 8, 25)]
    + [("txt2img", BATCH_SHAPE, 10, 1.0)]
    + [("img2img", SHAPE, steps, 0.6) for steps in (3, 10, 25)]
    + [("img2img", SHAPE, 4, 1.0)]
)


def f32_b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().to(torch.float32).contiguous().numpy().tobytes()).decode()


def fixed(shape, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def toy_eps(x_in: torch.Tensor, t, c: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.tanh(x_in) + (0.2 * float(t) / 1000) * c


def scheduler_for(sampler: str, schedule: str):
    cls, overrides = SAMPLERS[sampler]
    if schedule == "karras":
        overrides = {**overrides, "use_karras_sigmas": True}
    return cls.from_config(SD15_CONFIG, **overrides)


def supports_karras(sampler: str) -> bool:
    return "use_karras_sigmas" in inspect.signature(SAMPLERS[sampler][0].__init__).parameters


def step_kwargs(scheduler, generator):
    # StableDiffusionPipeline.prepare_extra_step_kwargs(generator, eta=0.0)
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def run(sampler, schedule, mode, shape, steps, strength, seed, c, image):
    return run_scheduler(scheduler_for(sampler, schedule), mode, shape, steps, strength, seed, c, image)


def run_scheduler(scheduler, mode, shape, steps, strength, seed, c, image):
    """One scheduler loop over the toy eps model: txt2img from noise, or img2img from `image` noised
    to the first kept step (StableDiffusionImg2ImgPipeline.get_timesteps + prepare_latents)."""
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if mode == "txt2img":
        latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    else:
        # StableDiffusionImg2ImgPipeline.get_timesteps + prepare_latents
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = scheduler.timesteps[t_start * scheduler.order :]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        latent_timestep = timesteps[:1].repeat(shape[0])
        noise = torch.randn(shape, generator=generator)
        latents = scheduler.add_noise(image, noise, latent_timestep)
    start_norm = float(latents.double().norm())
    kwargs = step_kwargs(scheduler, generator)
    seen = []
    for t in timesteps:
        x_in = scheduler.scale_model_input(latents, t)
        seen.append(float(t))
        eps = toy_eps(x_in, t, c)
        latents = scheduler.step(eps, t, latents, **kwargs, return_dict=False)[0]
    return seen, start_norm, latents


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="JSON file to write")
    args = parser.parse_args()
    logging.set_verbosity_error()
    torch.set_num_threads(1)

    tensors = {}
    for shape in (SHAPE, BATCH_SHAPE):
        key = "x".join(map(str, shape))
        tensors[f"c.{key}"] = fixed(shape, 1001)
        tensors[f"image.{key}"] = fixed(shape, 1002, 0.8)

    cases = []
    seed = 100
    for sampler in SAMPLERS:
        for schedule in ["default"] + (["karras"] if supports_karras(sampler) else []):
            for mode, shape, steps, strength in CASES:
                seed += 1
                key = "x".join(map(str, shape))
                seen, start_norm, final = run(
                    sampler, schedule, mode, shape, steps, strength, seed, tensors[f"c.{key}"], tensors[f"image.{key}"]
                )
                assert torch.isfinite(final).all(), (sampler, schedule, mode, steps)
                cases.append(
                    dict(
                        sampler=sampler,
                        schedule=schedule,
                        mode=mode,
                        shape=shape,
                        steps=steps,
                        strength=strength,
                        seed=seed,
                        timesteps=seen,
                        startNorm=start_norm,
                        final=f32_b64(final),
                    )
                )

    doc = dict(
        about="diffusers scheduler loops with a toy eps model; made by scripts/make_sampler_fixture.py",
        model="eps(x_in, t) = 0.5 * tanh(x_in) + (0.2 * t / 1000) * c  (c = tensors['c.<shape>'])",
        config=SD15_CONFIG,
        made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        tensors={k: dict(shape=list(v.shape), data=f32_b64(v)) for k, v in tensors.items()},
        cases=cases,
    )
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=0)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
