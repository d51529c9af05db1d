#!/usr/bin/env python3
"""The diffusers side of scripts/bench/gpu.sh: one JSON line on stdout.

Usage: gpu_diffusers.py WEIGHTS DEVICE DTYPE SIZE STEPS BATCHES REPEATS [--compile] [--no-eager]

StableDiffusionPipeline.from_single_file with local SD 1.5 configs (diffusers_side.write_configs;
nothing is downloaded), EulerDiscreteScheduler, guidance 7.5, output_type="latent" (no VAE decode,
as sdtorch's decode: false). Times whole pipeline calls after one 2-step warm-up per batch size;
REPEATS rounds over the batch sizes. With --compile, after the eager runs (unless --no-eager), the
UNet is compiled (channels-last + torch.compile(fullgraph=True), mode GPU_COMPILE_MODE, default
"reduce-overhead", as diffusers' docs do it); each batch size's first call, compile included, is
reported apart as compile_s. Needs diffusers on PYTHONPATH, torch, transformers.
"""
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

T0 = time.perf_counter()
import torch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
# Beside this file, or in the repo's scripts/bench when this runs from a copy.
sys.path.insert(1, str(pathlib.Path(os.environ.get("SDTORCH_ROOT", ".")).resolve() / "scripts" / "bench"))
from diffusers_side import write_configs  # noqa: E402

PROMPT, NEGATIVE = "a photo of a cat", "blurry"


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv):
    weights, device, dtype, size, steps, batches, repeats = argv[:7]
    size, steps, repeats = int(size), int(steps), int(repeats)
    batches = [int(b) for b in batches.split(",")]
    compile_ = "--compile" in argv
    eager = "--no-eager" not in argv
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()

    cfg = pathlib.Path(tempfile.mkdtemp(prefix="sd15-config-"))
    (cfg / "tokenizer").mkdir()
    write_configs(cfg)
    t = time.perf_counter()
    pipe = StableDiffusionPipeline.from_single_file(weights, config=str(cfg), local_files_only=True, safety_checker=None,
                                                    requires_safety_checker=False, torch_dtype=getattr(torch, dtype))
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t

    def once(batch, n):
        sync(device)
        s = time.perf_counter()
        pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=n, guidance_scale=7.5, width=size, height=size,
             num_images_per_prompt=batch, generator=torch.Generator().manual_seed(1), output_type="latent")
        sync(device)
        return time.perf_counter() - s

    def timed():
        out = {"warmup_s": {}, "runs": {}}
        for b in batches:
            out["warmup_s"][b] = once(b, 2)
        for _ in range(repeats):
            for b in batches:
                out["runs"].setdefault(b, []).append(once(b, steps))
        return out

    common = {"mode": "speed", "impl": "diffusers", "device": device, "dtype": dtype, "size": size, "steps": steps, "load_s": load_s,
              "torch": torch.__version__}
    # the pipeline call runs under its own torch.no_grad(), as users call it
    if eager:
        rec = {**common, "compiled": False, **timed()}
        rec["eager_wall_s"] = time.perf_counter() - T0  # process start to here: what an eager-only run costs
        print(json.dumps(rec), flush=True)
    if compile_:
        mode = os.environ.get("GPU_COMPILE_MODE", "reduce-overhead")
        rec = {**common, "compiled": True, "compile_mode": mode}
        try:
            # one static graph per batch size, not a dynamic-batch recompile at the second size
            torch._dynamo.config.automatic_dynamic_shapes = False
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet = torch.compile(pipe.unet, mode=mode, fullgraph=True)
            rec["compile_s"] = {}
            for b in batches:  # the first call compiles (and records the CUDA graph)
                rec["compile_s"][b] = once(b, 2)
            rec["runs"] = {}
            for _ in range(repeats):
                for b in batches:
                    rec["runs"].setdefault(b, []).append(once(b, steps))
        except Exception as e:  # noqa: BLE001 - reported, the eager figures stand
            traceback.print_exc()
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
