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

Then, appended so that the cases above stay as they were:
- LCMScheduler and DEISMultistepScheduler, as above;
- the schedules 'exponential', 'beta' (use_exponential_sigmas, use_beta_sigmas) and 'sgm_uniform'
  (timestep_spacing="trailing") for every diffusers class that has them;
- the samplers diffusers has no class for, and Euler a with a σ spread (EulerAncestralDiscreteScheduler
  has none): loops written below from k-diffusion's definitions (k_diffusion/sampling.py:
  sample_euler_ancestral, sample_dpmpp_2s_ancestral, sample_dpmpp_sde, sample_dpmpp_3m_sde; η = 1,
  s_noise = 1, r = 1/2) over the σ list and timesteps of EulerDiscreteScheduler with the same
  options, starting as it starts (init_noise_sigma, add_noise); their noise is torch.randn from the
  same generator, one draw per noise term in the order k-diffusion adds them (k-diffusion's
  sample_dpmpp_sde and sample_dpmpp_3m_sde use a Brownian tree instead). The model sees x/√(σ²+1)
  at the schedule's timestep for σ of the list and at diffusers' _sigma_to_t (log-σ interpolation)
  for the σ in between. Before writing, the script checks these loops against diffusers where it can
  (Euler a on its own schedule; DPMSolverSDEScheduler with its noise sampler fed the same draws).

Usage (diffusers source checkout, never part of this repo):
    PYTHONPATH=/path/to/diffusers/src python3 scripts/make_sampler_fixture.py test/fixtures/sampler-reference.json
"""

import argparse
import base64
import inspect
import json
import math
import sys
import types

import numpy as np
import torch
import diffusers
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
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
    "lcm": (LCMScheduler, {}),
    "deis": (DEISMultistepScheduler, {}),
}

# The schedules beyond 'default' and 'karras': diffusers' option for each.
NEW_SCHEDULES = {
    "exponential": {"use_exponential_sigmas": True},
    "beta": {"use_beta_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
}
SCHEDULE_OPTIONS = {"default": {}, "karras": {"use_karras_sigmas": True}, **NEW_SCHEDULES}

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
    return cls.from_config(SD15_CONFIG, **overrides, **SCHEDULE_OPTIONS[schedule])


def supports_karras(sampler: str) -> bool:
    return "use_karras_sigmas" in inspect.signature(SAMPLERS[sampler][0].__init__).parameters


def supports(sampler: str, schedule: str) -> bool:
    """Whether the diffusers class has the schedule's option."""
    params = inspect.signature(SAMPLERS[sampler][0].__init__).parameters
    return all(k in params for k in SCHEDULE_OPTIONS[schedule])


# ---------------------------------------------------------------------------------------------
# k-diffusion's samplers, written from their definitions (Karras et al. 2022 VE form: x = x0 + σ·ε,
# a denoiser D(x, σ)); σ values are Python floats, latents float32 tensors.


def ancestral_step(sigma_from, sigma_to):
    """k-diffusion's get_ancestral_step with η = 1: (σ_down, σ_up)."""
    up = min(sigma_to, (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


def k_euler_ancestral(model, x, sigmas, noise):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        down, up = ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + (x - denoised) / sigmas[i] * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise() * up
    return x


def k_dpmpp_2s_ancestral(model, x, sigmas, noise):
    sigma_of = lambda t: math.exp(-t)  # noqa: E731  (t = −log σ)
    t_of = lambda sigma: -math.log(sigma)  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        down, up = ancestral_step(sigmas[i], sigmas[i + 1])
        if down == 0:
            x = x + (x - denoised) / sigmas[i] * (down - sigmas[i])
        else:
            t, t_next = t_of(sigmas[i]), t_of(down)
            h = t_next - t
            s = t + h / 2
            x_2 = (sigma_of(s) / sigma_of(t)) * x - math.expm1(-h / 2) * denoised
            denoised_2 = model(x_2, sigma_of(s))
            x = (sigma_of(t_next) / sigma_of(t)) * x - math.expm1(-h) * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise() * up
    return x


def k_dpmpp_sde(model, x, sigmas, noise, r=0.5):
    sigma_of = lambda t: math.exp(-t)  # noqa: E731
    t_of = lambda sigma: -math.log(sigma)  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # half step to s, ancestral
        down, up = ancestral_step(sigma_of(t), sigma_of(s))
        s_ = t_of(down)
        x_2 = (sigma_of(s_) / sigma_of(t)) * x - math.expm1(t - s_) * denoised
        x_2 = x_2 + noise() * up
        denoised_2 = model(x_2, sigma_of(s))
        # whole step, ancestral, with the blended estimate
        down, up = ancestral_step(sigma_of(t), sigma_of(t_next))
        t_next_ = t_of(down)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_of(t_next_) / sigma_of(t)) * x - math.expm1(t - t_next_) * denoised_d
        x = x + noise() * up
    return x


def k_dpmpp_3m_sde(model, x, sigmas, noise, eta=1.0):
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = math.log(sigmas[i]) - math.log(sigmas[i + 1])
            h_eta = h * (eta + 1)
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * denoised
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - denoised_1) / (h_1 / h)
            x = x + noise() * sigmas[i + 1] * (-math.expm1(-2 * h * eta)) ** 0.5
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


KSAMPLERS = {
    "euler_a": k_euler_ancestral,
    "dpmpp_2s_a": k_dpmpp_2s_ancestral,
    "dpmpp_sde": k_dpmpp_sde,
    "dpmpp_3m_sde": k_dpmpp_3m_sde,
}


class Level(float):
    """A σ of the schedule's list, carrying the timestep the schedule gives it (σ a loop computes are plain floats)."""

    def __new__(cls, sigma, t):
        level = super().__new__(cls, sigma)
        level.t = t
        return level


def euler_schedule(config_overrides):
    """The σ list, timesteps and start of diffusers' EulerDiscreteScheduler: the schedule the k-diffusion loops walk."""
    return EulerDiscreteScheduler.from_config(SD15_CONFIG, **config_overrides)


def run_kdiffusion(sampler, scheduler, mode, shape, steps, strength, seed, c, image, prediction="epsilon"):
    """One k-diffusion loop over the toy model (read as ε or v), on `scheduler`'s σ list (an
    EulerDiscreteScheduler), started as run_scheduler starts it."""
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    start = 0
    if mode == "txt2img":
        latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    else:
        start = steps - min(int(steps * strength), steps)
        scheduler.set_begin_index(start)
        noise = torch.randn(shape, generator=generator)
        latents = scheduler.add_noise(image, noise, scheduler.timesteps[start : start + 1].repeat(shape[0]))
    start_norm = float(latents.double().norm())
    timesteps = [float(t) for t in scheduler.timesteps[start:]] + [0.0]
    sigmas = [Level(float(s), t) for s, t in zip(scheduler.sigmas[start:], timesteps)]
    log_sigmas = np.log((((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5).numpy())
    seen = []

    def model(x, sigma):
        # the schedule's own timestep for its σ, diffusers' σ -> t interpolation for σ computed in between
        t = sigma.t if isinstance(sigma, Level) else float(scheduler._sigma_to_t(np.array(sigma), log_sigmas))
        seen.append(t)
        out = toy_eps(x / (sigma**2 + 1) ** 0.5, t, c)
        if prediction == "v_prediction":
            return out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
        return x - sigma * out

    final = KSAMPLERS[sampler](model, latents, sigmas, lambda: torch.randn(shape, generator=generator))
    return seen, start_norm, final


def check_kdiffusion_loops(c, image):
    """The k-diffusion loops against diffusers where diffusers has the same method."""
    worst = 0.0
    for mode, shape, steps, strength in CASES:
        if shape != SHAPE:
            continue
        ref = run_scheduler(EulerAncestralDiscreteScheduler.from_config(SD15_CONFIG), mode, shape, steps, strength, 7, c, image)
        ours = run_kdiffusion("euler_a", euler_schedule({}), mode, shape, steps, strength, 7, c, image)
        worst = max(worst, float((ours[2] - ref[2]).norm() / ref[2].norm()))
        assert ours[0] == ref[0], (ours[0], ref[0])
    assert worst < 1e-5, f"euler_a loop vs EulerAncestralDiscreteScheduler: {worst}"
    print(f"k-diffusion euler_a loop vs diffusers EulerAncestralDiscreteScheduler: {worst:.1e}")

    # DPMSolverSDEScheduler is k-diffusion's sample_dpmpp_sde split in half steps; it needs torchsde
    # for its Brownian tree only, which its noise sampler replaced by the same Gaussian draws avoids.
    sys.modules.setdefault("torchsde", types.ModuleType("torchsde"))
    from diffusers.schedulers.scheduling_dpmsolver_sde import DPMSolverSDEScheduler

    worst = 0.0
    for schedule in ["default", "karras", "exponential", "beta"]:
        for steps in (2, 3, 10):
            generator = torch.Generator().manual_seed(8)
            sde = DPMSolverSDEScheduler.from_config(SD15_CONFIG, **SCHEDULE_OPTIONS[schedule])
            sde.set_timesteps(steps)
            sde.noise_sampler = lambda *_: torch.randn(SHAPE, generator=generator)
            latents = torch.randn(SHAPE, generator=generator) * sde.init_noise_sigma
            for t in sde.timesteps:
                eps = toy_eps(sde.scale_model_input(latents, t), t, c)
                latents = sde.step(eps, t, latents, return_dict=False)[0]
            ours = run_kdiffusion("dpmpp_sde", euler_schedule(SCHEDULE_OPTIONS[schedule]), "txt2img", SHAPE, steps, 1.0, 8, c, image)
            worst = max(worst, float((ours[2] - latents).norm() / latents.norm()))
    assert worst < 1e-5, f"dpmpp_sde loop vs DPMSolverSDEScheduler: {worst}"
    print(f"k-diffusion dpmpp_sde loop vs diffusers DPMSolverSDEScheduler (same noise): {worst:.1e}")

    # diffusers' third-order SDE-DPM-Solver++ is another method than k-diffusion's 3M SDE: say how far
    for steps in (10, 25):
        ref = run_scheduler(
            DPMSolverMultistepScheduler.from_config(SD15_CONFIG, algorithm_type="sde-dpmsolver++", solver_order=3, use_exponential_sigmas=True),
            "txt2img", SHAPE, steps, 1.0, 9, c, image,
        )
        ours = run_kdiffusion("dpmpp_3m_sde", euler_schedule(NEW_SCHEDULES["exponential"]), "txt2img", SHAPE, steps, 1.0, 9, c, image)
        print(f"k-diffusion dpmpp_3m_sde vs diffusers sde-dpmsolver++ order 3, {steps} steps: {float((ours[2] - ref[2]).norm() / ref[2].norm()):.1e} apart")


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

    check_kdiffusion_loops(tensors["c." + "x".join(map(str, SHAPE))], tensors["image." + "x".join(map(str, SHAPE))])

    cases = []
    seed = 100

    def add(sampler, schedule, runner):
        nonlocal seed
        for mode, shape, steps, strength in CASES:
            seed += 1
            key = "x".join(map(str, shape))
            seen, start_norm, final = runner(mode, shape, steps, strength, seed, tensors[f"c.{key}"], tensors[f"image.{key}"])
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

    def diffusers_runner(sampler, schedule):
        return lambda *a: run(sampler, schedule, *a)

    def k_runner(sampler, schedule):
        return lambda *a: run_kdiffusion(sampler, euler_schedule(SCHEDULE_OPTIONS[schedule]), *a)

    for sampler in SAMPLERS:
        for schedule in ["default"] + (["karras"] if supports_karras(sampler) else []):
            add(sampler, schedule, diffusers_runner(sampler, schedule))
    for sampler in SAMPLERS:
        for schedule in NEW_SCHEDULES:
            # LCMScheduler takes timestep_spacing but walks its own timesteps: no schedule but its own
            if supports(sampler, schedule) and sampler != "lcm":
                add(sampler, schedule, diffusers_runner(sampler, schedule))
    # Euler a with σ spreads, and the samplers diffusers lacks, from k-diffusion's definitions
    for schedule in ["karras", "exponential", "beta"]:
        add("euler_a", schedule, k_runner("euler_a", schedule))
    for sampler in ["dpmpp_2s_a", "dpmpp_sde", "dpmpp_3m_sde"]:
        for schedule in SCHEDULE_OPTIONS:
            add(sampler, schedule, k_runner(sampler, schedule))

    # LCM's boundary scalings: too close to (0, 1) on its timesteps to show in the loops above
    lcm = LCMScheduler.from_config(SD15_CONFIG)
    lcm_scalings = []
    for t in (999, 759, 499, 259, 19, 3, 0):
        c_skip, c_out = lcm.get_scalings_for_boundary_condition_discrete(torch.tensor(t))
        lcm_scalings.append(dict(t=t, cSkip=float(c_skip), cOut=float(c_out)))

    doc = dict(
        about="diffusers scheduler loops, and k-diffusion sampler loops on diffusers' Euler schedules, with a toy eps model; made by scripts/make_sampler_fixture.py",
        model="eps(x_in, t) = 0.5 * tanh(x_in) + (0.2 * t / 1000) * c  (c = tensors['c.<shape>'])",
        config=SD15_CONFIG,
        made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        tensors={k: dict(shape=list(v.shape), data=f32_b64(v)) for k, v in tensors.items()},
        cases=cases,
        lcmScalings=lcm_scalings,
    )
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=0)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
