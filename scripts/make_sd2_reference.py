#!/usr/bin/env python3
"""Reference outputs of diffusers for SD 2.x (512 eps, 768 v), inpainting and a separate VAE file.

Everything is computed in float32 on the CPU from the fp16 random files of make_random_checkpoints.py
(and the fp32 sd15-random-1234.safetensors of make_random_sd15.py), each loaded by diffusers'
from_single_file(file, config=<local folder of the real model's configs, diffusers_configs.py>,
local_files_only=True, torch_dtype=torch.float32). Before computing anything the script checks that
diffusers reads each file as intended: infer_diffusers_model_type names it (v2, inpainting,
inpainting_v2), and every tensor of every loaded network equals the file's (converted by diffusers'
own converters, nothing missing, nothing left over but what diffusers ignores on purpose).

Writes test/fixtures/sd2-reference.safetensors and sd2-reference.json (what each entry is, its
settings in diffusers' terms and in sdtorch's option names, how the inpaint pipeline draws its noise
and prepares the mask) and the masks test/fixtures/inpaint-mask.png, inpaint-mask-32x48.png.

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_sd2_reference.py WEIGHTS_DIR
  WEIGHTS_DIR holds the files of make_random_checkpoints.py and make_random_sd15.py.
"""
import argparse
import gc
import json
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from diffusers_configs import SD15_SCHEDULER, VAE, write_config_folder  # noqa: E402

FIX = HERE.parent / "test" / "fixtures"
PROMPT, NEGATIVE, CFG = "a photo of a cat", "blurry, low quality", 7.5
FILES = {
    "sd21-v": "sd21-v-random-1234.fp16.safetensors",
    "sd21-base": "sd21-base-random-1234.fp16.ckpt",
    "sd15-inpaint": "sd15-inpaint-random-1234.fp16.safetensors",
    "sd2-inpaint": "sd2-inpaint-random-1234.fp16.safetensors",
    "vae": "vae-random-4321.fp16.safetensors",
    "sd15": "sd15-random-1234.safetensors",
}
# sdtorch sampler name -> diffusers scheduler class (DESIGN.md's table)
SAMPLERS = {"euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler", "ddim": "DDIMScheduler",
            "dpmpp_2m": "DPMSolverMultistepScheduler"}
MASK = dict(file="inpaint-mask.png", size=(64, 64), box=(11, 5, 43, 35))  # (x0, y0, x1, y1), white = repaint
MASK_SMALL = dict(file="inpaint-mask-32x48.png", size=(32, 48), box=(5, 9, 20, 34))

# Each pipeline run, in sdtorch's option names (+ model, pipeline). All: prompt PROMPT, negative NEGATIVE, cfgScale CFG.
CASES = [
    dict(key="txt2img.sd21v.euler", model="sd21-v", sampler="euler", steps=8, width=96, height=64, seed=42),
    dict(key="txt2img.sd21v.dpmpp_2m", model="sd21-v", sampler="dpmpp_2m", steps=8, width=96, height=64, seed=43),
    dict(key="txt2img.sd21v.ddim.zsnr_rescale", model="sd21-v", sampler="ddim", steps=8, width=96, height=64, seed=44,
         rescaleCfg=0.7, zeroTerminalSnr=True, timestepSpacing="trailing"),
    dict(key="txt2img.sd21v.euler.zsnr_rescale", model="sd21-v", sampler="euler", steps=8, width=96, height=64, seed=45,
         rescaleCfg=0.7, zeroTerminalSnr=True, timestepSpacing="trailing"),
    dict(key="txt2img.sd21base.euler_a", model="sd21-base", sampler="euler_a", steps=8, width=64, height=64, seed=46),
    dict(key="inpaint.sd15inpaint.euler_a.s100", model="sd15-inpaint", sampler="euler_a", steps=10, width=64, height=64,
         seed=47, image="img2img-init.png", mask=MASK["file"], strength=1.0, maskBlur=0),
    dict(key="inpaint.sd15inpaint.euler.s075", model="sd15-inpaint", sampler="euler", steps=10, width=64, height=64,
         seed=48, image="img2img-init.png", mask=MASK["file"], strength=0.75, maskBlur=0),
    dict(key="inpaint.sd15inpaint.ddim.mask32x48", model="sd15-inpaint", sampler="ddim", steps=10, width=64, height=64,
         seed=49, image="img2img-init.png", mask=MASK_SMALL["file"], strength=1.0, maskBlur=0),
    dict(key="inpaint.sd2inpaint.euler_a.s075", model="sd2-inpaint", sampler="euler_a", steps=10, width=64, height=64,
         seed=50, image="img2img-init.png", mask=MASK["file"], strength=0.75, maskBlur=0),
    dict(key="inpaint4ch.sd15.ddim.s075", model="sd15", sampler="ddim", steps=10, width=64, height=64, seed=51,
         image="img2img-init.png", mask=MASK["file"], strength=0.75, maskBlur=0),
    dict(key="inpaint4ch.sd15.euler_a.s075", model="sd15", sampler="euler_a", steps=10, width=64, height=64, seed=52,
         image="img2img-init.png", mask=MASK["file"], strength=0.75, maskBlur=0),
    dict(key="img2img.sd15.vae4321.euler", model="sd15", vae="vae", sampler="euler", steps=10, width=64, height=64,
         seed=53, image="img2img-init.png", strength=0.6),
]

RNG_NOTES = {
    "generator": "one torch.Generator().manual_seed(seed) on the CPU serves every draw below, in this order",
    "txt2img": "noise = randn([B,4,h,w]) * init_noise_sigma; then the sampler's own draws (euler_a: one randn per step)",
    "img2img": "StableDiffusionImg2ImgPipeline: image posterior sample (mean + std * randn([B,4,h,w])) * 0.18215, then "
               "noise randn([B,4,h,w]), start = scheduler.add_noise(image_latents, noise, first timestep); then the sampler's draws",
    "inpaint": "StableDiffusionInpaintPipeline, in this order: (1) the IMAGE's VAE posterior sample "
               "(latent_dist.sample: mean + exp(0.5*logvar) * randn([1,4,h,w]), then * 0.18215), drawn ONLY when "
               "strength < 1 or the UNet has 4 input channels (9-channel UNet at strength 1.0: not drawn); "
               "(2) noise = randn([B,4,h,w]); start = noise * init_noise_sigma when strength == 1.0, else "
               "scheduler.add_noise(image_latents, noise, timesteps[0]); (3) the MASKED IMAGE's VAE posterior sample "
               "(same formula), drawn ALWAYS, also for a 4-channel UNet that never uses it; (4) the sampler's draws "
               "(euler_a: one randn per step).",
    "inpaint_9ch": "each step: UNet input = cat([scale_model_input(latents, t), mask, masked_image_latents], dim=1): "
                   "the 5 extra channels are NOT scaled by the sampler's c_in; mask and masked_image_latents are "
                   "duplicated for the uncond/cond batch; the sampler steps only the 4 latent channels",
    "inpaint_4ch": "each step, after scheduler.step: latents = (1 - mask) * init_latents_proper + mask * latents, "
                   "init_latents_proper = scheduler.add_noise(image_latents, noise, timesteps[i + 1]) with the noise "
                   "of (2), and image_latents itself (no noise) after the last step; mask is the latent mask below",
    "guidance_rescale": "diffusers rescales the guided UNet OUTPUT (v for a v model, eps for an eps model), never "
                        "x0: std over all dims but batch, torch.std (unbiased, N-1): out = r * cfg * std(cond)/std(cfg) "
                        "+ (1 - r) * cfg, cfg = uncond + scale * (cond - uncond)",
    "zero_terminal_snr": "rescale_betas_zero_snr=True (Lin et al. 2023, alg. 1) makes alphas_cumprod[999] = 0; "
                         "the sigma schedulers (Euler, Euler a, DPM++ 2M) then set alphas_cumprod[-1] = 2**-24 "
                         "(sigma_max = sqrt((1 - 2**-24) / 2**-24) ~ 4096), DDIMScheduler keeps 0 (its v -> x0 needs "
                         "no division by it)",
}
MASK_NOTES = {
    "mask_image": "VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True, do_convert_grayscale=True)"
                  ".preprocess(PIL mask, height, width): resize to (width, height) FIRST, in the PNG's own mode "
                  "(these masks are 8-bit grayscale 'L'), PIL Image.LANCZOS (reducing_gap None; PIL returns a "
                  "copy when the size already matches), THEN convert('L'), /255, binarize: < 0.5 -> 0, >= 0.5 -> 1",
    "init_image": "image_processor.preprocess(image, height, width): the same LANCZOS resize when the size differs, "
                  "RGB /255 * 2 - 1",
    "masked_image": "init_image * (mask < 0.5): pixels to repaint become 0 (mid gray), the rest keep the image",
    "latent_mask": "torch.nn.functional.interpolate(mask, size=(height // 8, width // 8)), mode 'nearest': latent "
                   "cell (i, j) takes the pixel (8i, 8j), the TOP-LEFT pixel of its 8x8 block, not the centre",
    "blur": "diffusers does not blur the mask: sdtorch's maskBlur 0",
    "resize_margin": "the 32x48 mask resized to 64x64 by LANCZOS has no pixel within {margin:.1f}/255 of the "
                     "0.5 threshold, so any Lanczos-3 implementation binarizes it the same",
}


def make_mask(spec) -> Image.Image:
    w, h = spec["size"]
    a = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = spec["box"]
    a[y0:y1, x0:x1] = 255
    img = Image.fromarray(a, mode="L")
    img.save(FIX / spec["file"], optimize=True)
    return Image.open(FIX / spec["file"])


def resize_margin(spec) -> float:
    w, h = spec["size"]
    a = np.asarray(Image.open(FIX / spec["file"]), np.float32)
    f = np.asarray(Image.fromarray(a, mode="F").resize((64, 64), Image.LANCZOS))
    return float(np.abs(f - 127.5).min())


def scheduler_for(case, prediction):
    import diffusers

    cls = getattr(diffusers, SAMPLERS[case["sampler"]])
    overrides = {"prediction_type": prediction}
    if case.get("zeroTerminalSnr"):
        overrides["rescale_betas_zero_snr"] = True
    if case.get("timestepSpacing"):
        overrides["timestep_spacing"] = case["timestepSpacing"]
    return cls.from_config(SD15_SCHEDULER, **overrides), overrides


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    te = getattr(pipe, "text_encoder", None)
    if te is not None and not hasattr(te, "text_model"):  # transformers 5 flattened CLIPTextModel
        object.__setattr__(te, "text_model", te)
    return pipe


class Checks:
    """diffusers reads each file as intended: the model type, and every tensor of every network."""

    def __init__(self):
        self.log = {}

    def model_type(self, name, ckpt, expected):
        from diffusers.loaders.single_file_utils import infer_diffusers_model_type

        got = infer_diffusers_model_type(ckpt)
        assert got == expected, (name, got, expected)
        self.log.setdefault(name, {})["infer_diffusers_model_type"] = got

    def same(self, name, component, module, converted, ignored=()):
        state = {k: v for k, v in module.state_dict().items() if "position_ids" not in k}
        converted = {k: v for k, v in converted.items() if "position_ids" not in k}
        assert set(state) == set(converted), (name, component, sorted(set(state) ^ set(converted))[:10])
        for k, v in converted.items():
            assert torch.equal(state[k], v.to(state[k].dtype)), (name, component, k)
        entry = self.log.setdefault(name, {})
        entry[component] = f"{len(converted)} tensors, all equal to the file's"
        if ignored:
            entry[component] += f"; file tensors diffusers leaves out on purpose: {len(ignored)} ({', '.join(sorted(ignored)[:3])}, ...)"

    def pipeline(self, name, pipe, ckpt):
        from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                         convert_ldm_vae_checkpoint, convert_open_clip_checkpoint)

        self.same(name, "unet", pipe.unet, convert_ldm_unet_checkpoint(ckpt, dict(pipe.unet.config)))
        self.same(name, "vae", pipe.vae, convert_ldm_vae_checkpoint(ckpt, dict(pipe.vae.config)))
        te = pipe.text_encoder
        if "cond_stage_model.model.token_embedding.weight" in ckpt:
            conv = convert_open_clip_checkpoint(te, ckpt)
            used = set()
            for k in ckpt:
                if k.startswith("cond_stage_model.model."):
                    used.add(k)
            ignored = {k for k in used if ".resblocks.23." in k or k.endswith(("text_projection", "logit_scale"))}
            assert len(ignored) == 14, sorted(ignored)
        else:
            conv = convert_ldm_clip_checkpoint(ckpt)
            ignored = ()
        conv = {k.removeprefix("text_model."): v for k, v in conv.items()}
        self.same(name, "text_encoder", te, conv, ignored)


def load_checkpoint(path):
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    return load_single_file_checkpoint(str(path), local_files_only=True)


def components(out, pipe, tag, ctx_dim, in_channels, text=True):
    g = torch.Generator().manual_seed(2024)
    with torch.no_grad():
        if text:
            ids = pipe.tokenizer([PROMPT, "an astronaut riding a horse on the moon, highly detailed"], padding="max_length",
                                 max_length=77, truncation=True, return_tensors="pt").input_ids
            out[f"{tag}.text.ids"] = ids
            out[f"{tag}.text.out"] = pipe.text_encoder(ids)[0]
        x = torch.randn(2, 4, 8, 8, generator=g)
        t = torch.tensor([981.0, 1.0])
        ctx = torch.randn(2, 77, ctx_dim, generator=g)
        out[f"{tag}.unet.x"], out[f"{tag}.unet.t"], out[f"{tag}.unet.ctx"] = x, t, ctx
        full = x
        if in_channels == 9:
            concat = torch.cat([(torch.rand(2, 1, 8, 8, generator=g) > 0.5).float(), torch.randn(2, 4, 8, 8, generator=g)], 1)
            out[f"{tag}.unet.concat"] = concat
            full = torch.cat([x, concat], 1)
        out[f"{tag}.unet.out"] = pipe.unet(full, t, encoder_hidden_states=ctx).sample


def capture(pipe, out, key):
    """Records what the inpaint pipeline prepares: pixel mask, latent mask, masked-image latents, start latents."""
    pm, pl, mp = pipe.prepare_mask_latents, pipe.prepare_latents, pipe.mask_processor.preprocess

    def mask_pre(*a, **k):
        r = mp(*a, **k)
        out[f"{key}.mask_pixels"] = r.clone()
        return r

    def latents(*a, **k):
        r = pl(*a, **k)
        out[f"{key}.start"] = r[0].clone()
        return r

    def masks(*a, **k):
        mask, masked = pm(*a, **k)
        out[f"{key}.latent_mask"] = mask[: mask.shape[0] // 2].clone()
        out[f"{key}.masked_image_latents"] = masked[: masked.shape[0] // 2].clone()
        return mask, masked

    pipe.mask_processor.preprocess, pipe.prepare_latents, pipe.prepare_mask_latents = mask_pre, latents, masks


def check_draw_order(pipe, case, out):
    """Re-derives what capture() recorded from RNG_NOTES and MASK_NOTES alone: they are what diffusers does."""
    key, f = case["key"], pipe.vae_scale_factor
    mask_png = Image.open(FIX / case["mask"])
    assert mask_png.mode == "L"
    resized = mask_png.resize((case["width"], case["height"]), Image.LANCZOS) if mask_png.size != (case["width"], case["height"]) else mask_png
    mask = torch.from_numpy((np.asarray(resized, np.float32) / 255 >= 0.5).astype(np.float32))[None, None]
    assert torch.equal(out[f"{key}.mask_pixels"], mask), key
    assert torch.equal(out[f"{key}.latent_mask"], mask[:, :, ::f, ::f]), key  # nearest = the top-left pixel
    image = torch.from_numpy(np.asarray(Image.open(FIX / case["image"]).convert("RGB"), np.float32) / 255 * 2 - 1)
    image = image.permute(2, 0, 1)[None]
    g = torch.Generator().manual_seed(case["seed"])

    def sample(x):
        d = pipe.vae.encode(x).latent_dist
        return (d.mean + d.std * torch.randn(d.mean.shape, generator=g)) * pipe.vae.config.scaling_factor

    nine = pipe.unet.config.in_channels == 9
    with torch.no_grad():
        image_latents = sample(image) if case["strength"] < 1 or not nine else None
        noise = torch.randn(out[f"{key}.start"].shape, generator=g)
        masked = sample(image * (mask < 0.5))
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(case["steps"])
    if case["strength"] == 1:
        start = noise * scheduler.init_noise_sigma
    else:
        t_start = case["steps"] - min(int(case["steps"] * case["strength"]), case["steps"])
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        start = scheduler.add_noise(image_latents, noise, scheduler.timesteps[t_start * scheduler.order:][:1])
    for name, want in ((".start", start), (".masked_image_latents", masked)):
        got = out[key + name]
        assert (got - want).abs().max() <= 1e-5 * want.abs().max(), (key, name, (got - want).abs().max())


def run_case(pipe, case, out, docs, prediction):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

    scheduler, overrides = scheduler_for(case, prediction)
    pipe.scheduler = scheduler
    kwargs = dict(prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=CFG, num_inference_steps=case["steps"],
                  generator=torch.Generator().manual_seed(case["seed"]), output_type="latent")
    if "rescaleCfg" in case:
        kwargs["guidance_rescale"] = case["rescaleCfg"]
    if "image" in case:
        kwargs["image"] = Image.open(FIX / case["image"])
        kwargs["strength"] = case["strength"]
    if "mask" in case:
        kwargs["mask_image"] = Image.open(FIX / case["mask"])
    if isinstance(pipe, StableDiffusionInpaintPipeline) or not isinstance(pipe, StableDiffusionImg2ImgPipeline):
        kwargs["height"], kwargs["width"] = case["height"], case["width"]
    start = time.time()
    with torch.no_grad():
        latents = pipe(**kwargs).images
    assert torch.isfinite(latents).all(), case["key"]
    out[case["key"]] = latents
    call = {k: v for k, v in kwargs.items() if k not in ("generator", "image", "mask_image")}
    docs[case["key"]] = dict(
        sdtorch={"prompt": PROMPT, "negativePrompt": NEGATIVE, "cfgScale": CFG,
                 **{k: v for k, v in case.items() if k not in ("key", "model", "vae")}, "decode": False},
        model=FILES.get(case["model"], case["model"]), vae=FILES[case["vae"]] if "vae" in case else None,
        prediction="v" if prediction == "v_prediction" else prediction, pipeline=type(pipe).__name__,
        scheduler=dict(cls=type(scheduler).__name__, from_config="SD1.5 config", overrides=overrides,
                       timesteps=[float(t) for t in scheduler.timesteps],
                       **({"sigmas": [float(x) for x in scheduler.sigmas]} if hasattr(scheduler, "sigmas") else {}),
                       init_noise_sigma=float(scheduler.init_noise_sigma)),
        call={**call, "generator": f"torch.Generator().manual_seed({case['seed']})",
              **({"image": case["image"]} if "image" in case else {}), **({"mask_image": case["mask"]} if "mask" in case else {})},
        shape=list(latents.shape))
    print(f"{case['key']}: {list(latents.shape)} std {latents.std():.3f} ({time.time() - start:.1f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", type=pathlib.Path)
    a = ap.parse_args()
    torch.set_num_threads(2)
    import diffusers
    import transformers
    from diffusers import (AutoencoderKL, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline,
                           StableDiffusionPipeline)
    from diffusers.loaders.single_file_utils import _legacy_load_scheduler, convert_ldm_vae_checkpoint
    from diffusers.utils import logging

    logging.set_verbosity_error()
    path = {k: a.weights / v for k, v in FILES.items()}
    masks = {s["file"]: make_mask(s) for s in (MASK, MASK_SMALL)}
    margin = resize_margin(MASK_SMALL)
    assert margin > 16, margin
    out, docs, checks = {}, {}, Checks()
    tmp = tempfile.TemporaryDirectory()
    folders = {n: write_config_folder(n, pathlib.Path(tmp.name)) for n in ("sd15", "sd15-inpaint", "sd21", "sd2-inpaint")}
    load = dict(local_files_only=True, torch_dtype=torch.float32)
    timings = {}

    def single_file(cls, name, folder, **kw):
        start = time.time()
        ckpt = load_checkpoint(path[name])
        pipe = quiet(cls.from_single_file(str(path[name]), config=str(folders[folder]), **load, **kw))
        checks.pipeline(name, pipe, ckpt)
        timings[f"load {name}"] = round(time.time() - start, 1)
        return pipe, ckpt

    def cases(pipe, model, prediction):
        for case in CASES:
            if case["model"] == model and "vae" not in case:
                run_case(pipe, case, out, docs, prediction)

    # SD 2.1 768-v: components, txt2img (euler, dpmpp_2m, zero-SNR + rescale with ddim and euler)
    pipe, ckpt = single_file(StableDiffusionPipeline, "sd21-v", "sd21")
    checks.model_type("sd21-v", ckpt, "v2")
    prediction = {}
    for name, step in (("sd21-v", None), ("sd21-base", 875000)):
        legacy = dict(ckpt, **({"global_step": step} if step else {}))
        prediction[name] = _legacy_load_scheduler(diffusers.DDIMScheduler, legacy, "scheduler").config.prediction_type
    assert prediction == {"sd21-v": "v_prediction", "sd21-base": "epsilon"}, prediction
    checks.log["sd21-v"]["prediction_rule"] = ("single_file_utils._legacy_load_scheduler: 'v2' without global_step -> "
                                               "v_prediction; with global_step 875000 -> epsilon")
    assert pipe.tokenizer.pad_token_id == 0 and pipe.text_encoder.config.num_hidden_layers == 23
    components(out, pipe, "sd21v", 1024, 4)
    cases(pipe, "sd21-v", "v_prediction")
    del pipe, ckpt
    gc.collect()

    # SD 2.1 512 base: the same tensors in a .ckpt with global_step 875000 -> epsilon
    pipe, ckpt = single_file(StableDiffusionPipeline, "sd21-base", "sd21")
    checks.model_type("sd21-base", ckpt, "v2")
    raw = torch.load(str(path["sd21-base"]), map_location="cpu", weights_only=True, mmap=True)
    assert raw["global_step"] == 875000 and raw["epoch"] == 0
    checks.log["sd21-base"]["global_step"] = ("875000, read from the .ckpt's top level; diffusers' "
                                              "load_single_file_checkpoint unwraps state_dict and drops it, so the "
                                              "prediction is passed here as diffusers' rule gives it: epsilon")
    del raw
    cases(pipe, "sd21-base", "epsilon")
    del pipe, ckpt
    gc.collect()

    # Inpainting UNets (9 channels): components and inpaint runs
    for name, folder, tag, ctx_dim, kind in (("sd15-inpaint", "sd15-inpaint", "sd15inpaint", 768, "inpainting"),
                                             ("sd2-inpaint", "sd2-inpaint", "sd2inpaint", 1024, "inpainting_v2")):
        pipe, ckpt = single_file(StableDiffusionInpaintPipeline, name, folder)
        checks.model_type(name, ckpt, kind)
        assert pipe.unet.config.in_channels == 9
        components(out, pipe, tag, ctx_dim, 9, text=False)
        for case in CASES:
            if case["model"] == name:
                capture(pipe, out, case["key"])
                run_case(pipe, case, out, docs, "epsilon")
                check_draw_order(pipe, case, out)
        del pipe, ckpt
        gc.collect()

    # SD 1.5 (fp32 file): 4-channel masked img2img; img2img with the separate VAE; the VAE's components
    pipe, ckpt = single_file(StableDiffusionInpaintPipeline, "sd15", "sd15")
    for case in CASES:
        if case["model"] == "sd15" and "mask" in case:
            capture(pipe, out, case["key"])
            run_case(pipe, case, out, docs, "epsilon")
            check_draw_order(pipe, case, out)
    start = time.time()
    vae = AutoencoderKL.from_single_file(str(path["vae"]), config=str(folders["sd15"]), subfolder="vae", **load)
    vae_ckpt = load_checkpoint(path["vae"])
    assert not any(k.startswith("first_stage_model.") for k in vae_ckpt)
    checks.same("vae", "vae", vae, convert_ldm_vae_checkpoint(vae_ckpt, VAE))
    timings["load vae"] = round(time.time() - start, 1)
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        dist = vae.encode(image).latent_dist
        out["vae4321.image"], out["vae4321.mean"], out["vae4321.logvar"] = image, dist.mean, dist.logvar
        z = torch.randn(1, 4, 8, 8, generator=g)
        out["vae4321.z"], out["vae4321.decoded"] = z, vae.decode(z).sample
    img2img = quiet(StableDiffusionImg2ImgPipeline(**{**pipe.components, "vae": vae}))
    for case in CASES:
        if "vae" in case:
            run_case(img2img, case, out, docs, "epsilon")
    del pipe, ckpt, img2img, vae
    gc.collect()

    entries = {
        "<tag>.text.ids / .text.out": "sd21v: tokenizer([PROMPT, 'an astronaut riding a horse on the moon, highly detailed'], "
                                      "padding='max_length', max_length=77, truncation=True) with SD 2's pad '!' (id 0 after "
                                      "<|endoftext|>); CLIPTextModel (23 layers: OpenCLIP's penultimate, then ln_final)(ids)[0]",
        "<tag>.unet.{x,t,ctx,concat,out}": "x [2,4,8,8], t [981, 1], ctx [2,77,1024 or 768] from "
                                           "torch.Generator().manual_seed(2024); inpainting UNets: concat [2,5,8,8] = "
                                           "(binary mask, 4 latent channels); out = UNet2DConditionModel(cat(x, concat), t, "
                                           "encoder_hidden_states=ctx).sample. Tags: sd21v, sd15inpaint, sd2inpaint",
        "vae4321.*": "AutoencoderKL.from_single_file(vae-random-4321.fp16.safetensors): encode(image [1,3,64,64]).latent_dist"
                     ".{mean,logvar}; decode(z [1,4,8,8], unscaled).sample; inputs from manual_seed(4321)",
        "<case key>": "final latents (output_type='latent') of the pipeline run described under 'cases' (scheduler.timesteps "
                      "and .sigmas: all of set_timesteps(steps); img2img/inpaint start at index steps - int(steps * strength))",
        "<inpaint key>.mask_pixels / .latent_mask / .masked_image_latents / .start": "what the inpaint pipeline prepared: "
            "binarized pixel mask [1,1,H,W], latent mask [1,1,h,w], masked-image latents [1,4,h,w] (already * 0.18215) and "
            "the starting latents [1,4,h,w] (before the first step)",
    }
    mask_notes = dict(MASK_NOTES, resize_margin=MASK_NOTES["resize_margin"].format(margin=margin))
    doc = dict(
        about="diffusers reference outputs for SD 2.x, inpainting and a separate VAE; made by scripts/make_sd2_reference.py",
        weights={k: v for k, v in FILES.items()}, weights_recipe="scripts/make_random_checkpoints.py, make_random_sd15.py",
        loading="Pipeline.from_single_file(file, config=<typed-in folder of the real model's configs: "
                "scripts/diffusers_configs.py>, local_files_only=True, torch_dtype=torch.float32, scheduler=<below>)",
        tolerances="components rel err < 1e-4, final latents < 1e-3 (fp32 CPU)",
        prompt=PROMPT, negative_prompt=NEGATIVE, guidance_scale=CFG, scheduler_base_config=SD15_SCHEDULER,
        samplers=SAMPLERS, masks={s["file"]: dict(size=s["size"], white_box_x0_y0_x1_y1=s["box"], mode=masks[s["file"]].mode)
                                  for s in (MASK, MASK_SMALL)},
        entries=entries, cases=docs, rng=RNG_NOTES, mask=mask_notes, checks=checks.log,
        made_with=dict(torch=torch.__version__, diffusers=diffusers.__version__, transformers=transformers.__version__,
                       numpy=np.__version__, pillow=Image.__version__),
    )
    save_file({k: v.contiguous() for k, v in sorted(out.items())}, str(FIX / "sd2-reference.safetensors"))
    (FIX / "sd2-reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(out)} tensors -> {FIX / 'sd2-reference.safetensors'}; loading (s): {timings}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
