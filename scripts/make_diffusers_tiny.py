#!/usr/bin/env python3
"""Writes the `tiny` preset as diffusers folders: test/fixtures/diffusers-tiny-{safetensors,bin}/, and the tiny
SDXL presets as test/fixtures/diffusers-tiny-sdxl{,-refiner}/.

The weights are the tiny checkpoint's (make_tiny_fixture.tiny_state_dict(): the fixture recipe over
tiny-manifest.json, seed 1234, the same values test/tiny.ts draws) moved into diffusers' and
transformers' classes by diffusers' own LDM -> diffusers conversion, as make_tiny_fixture.py does, then
stored in float16 (a folder is ~8 MB then; weights loaded from it in float32 equal the tiny checkpoint
cast to float16 and back, bit for bit). Each folder is what StableDiffusionPipeline.save_pretrained
writes (model_index.json; unet/, vae/ with diffusers' names; scheduler/ PNDMScheduler with SD 1.5's
config; tokenizer/ as transformers 4 wrote it: vocab.json, merges.txt, special_tokens_map.json,
tokenizer_config.json; safety_checker and feature_extractor null), with:

  diffusers-tiny-safetensors/  safe_serialization=True: diffusion_pytorch_model.safetensors, text_encoder/model.safetensors
  diffusers-tiny-bin/          safe_serialization=False: diffusion_pytorch_model.bin, text_encoder/pytorch_model.bin
                               (torch.save zips of the state dict)

The text encoder's file is written here, not by transformers 5: transformers 5 saves its flattened
CLIPTextModel without the `text_model.` prefix and always as safetensors, while the folders people
download (written by transformers 4) name `text_model.embeddings...` and carry the
`text_model.embeddings.position_ids` buffer; both files here are in that layout. The script loads
each folder back with StableDiffusionPipeline.from_pretrained and checks every weight and buffer.

SDXL (--only sdxl): the tiny-sdxl and tiny-sdxl-refiner presets' twins of make_sdxl_reference.py
(tiny_components: the fixture recipe over tiny-sdxl{,-refiner}-manifest.json, seed 1234, moved into
diffusers' / transformers' classes by diffusers' LDM -> diffusers conversion), stored in float16 with
safe_serialization=True, the same way:

  diffusers-tiny-sdxl/          StableDiffusionXLPipeline.save_pretrained (force_zeros_for_empty_prompt true):
                                unet/, vae/, text_encoder/ (CLIPTextModel), text_encoder_2/
                                (CLIPTextModelWithProjection: text_model.* and text_projection.weight),
                                tokenizer/ (pads <|endoftext|>), tokenizer_2/ (pads "!"), scheduler/
                                (EulerDiscreteScheduler, SDXL's config)
  diffusers-tiny-sdxl-refiner/  StableDiffusionXLImg2ImgPipeline.save_pretrained (requires_aesthetics_score true,
                                force_zeros_for_empty_prompt false): text_encoder_2/ and tokenizer_2/ only,
                                no text_encoder/ or tokenizer/ (model_index.json names them null)

Each is loaded back with the pipeline class's from_pretrained and every weight and buffer is checked.

Usage: PYTHONPATH=/path/to/diffusers/src python3 scripts/make_diffusers_tiny.py [--only sd1|sdxl]
"""
import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from diffusers_configs import SD15_SCHEDULER, write_tokenizer  # noqa: E402
from make_tiny_fixture import tiny_components, tiny_state_dict  # noqa: E402
from make_tokenizer_fixture import build_tokenizer  # noqa: E402

FIX = HERE.parent / "test" / "fixtures"
CLIP_PREFIX = "cond_stage_model.transformer.text_model."


def text_encoder_state(clip) -> dict:
    """transformers 4's file layout: text_model.* names (text_projection.weight as is) and the position_ids buffer."""
    keep = lambda k: k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k  # noqa: E731
    out = {keep(k): v.detach().clone().contiguous() for k, v in clip.state_dict().items() if "position_ids" not in k}
    out["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    return out


def write_folder(pipe, clip, out: pathlib.Path, safe: bool):
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(str(out), safe_serialization=safe)
    shutil.rmtree(out / "tokenizer")  # transformers 5 writes tokenizer.json (3.6 MB); people's folders have these:
    write_tokenizer(out / "tokenizer", "<|endoftext|>")
    te = out / "text_encoder"
    for f in te.glob("*.safetensors"):
        f.unlink()
    state = text_encoder_state(clip)
    if safe:
        save_file(state, str(te / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, str(te / "pytorch_model.bin"))


def check_folder(out: pathlib.Path, unet, vae, clip):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(out), torch_dtype=torch.float32, local_files_only=True)
    for name, want in (("unet", unet), ("vae", vae), ("text_encoder", clip)):
        got = getattr(pipe, name).state_dict()
        ref = want.state_dict()
        assert set(got) == set(ref), (name, set(got) ^ set(ref))
        for k, v in ref.items():
            assert torch.equal(got[k], v.to(got[k].dtype)), (out.name, name, k)
    assert pipe.tokenizer.model_max_length == 77 and pipe.tokenizer.pad_token_id == 49407
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out.relative_to(FIX.parent.parent)}: {size / 1e6:.1f} MB, {files}")


def write_sdxl_folder(pipe, out: pathlib.Path):
    """save_pretrained (safetensors), then the tokenizers and text encoder files in transformers 4's layout."""
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(str(out), safe_serialization=True)
    for folder, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        if (out / folder).exists():
            shutil.rmtree(out / folder)
            write_tokenizer(out / folder, pad)
    for folder in ("text_encoder", "text_encoder_2"):
        te = getattr(pipe, folder)
        if te is None:
            continue
        for f in (out / folder).glob("*.safetensors"):
            f.unlink()
        save_file(text_encoder_state(te), str(out / folder / "model.safetensors"), metadata={"format": "pt"})


def check_sdxl_folder(out: pathlib.Path, cls, parts: dict, refiner: bool):
    pipe = cls.from_pretrained(str(out), torch_dtype=torch.float32, local_files_only=True)
    for name, want in parts.items():
        if want is None:
            assert getattr(pipe, name, None) is None and not (out / name).exists(), name
            continue
        got, ref = getattr(pipe, name).state_dict(), want.state_dict()
        assert set(got) == set(ref), (name, set(got) ^ set(ref))
        for k, v in ref.items():
            assert torch.equal(got[k], v.to(got[k].dtype)), (out.name, name, k)
    assert pipe.tokenizer_2.pad_token_id == 0 and pipe.tokenizer_2.model_max_length == 77
    if refiner:
        assert pipe.tokenizer is None and pipe.config.requires_aesthetics_score and not pipe.config.force_zeros_for_empty_prompt
    else:
        assert pipe.tokenizer.pad_token_id == 49407 and pipe.config.force_zeros_for_empty_prompt
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out.relative_to(FIX.parent.parent)}: {size / 1e6:.1f} MB, {files}")


def sdxl_main():
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    from diffusers_configs import SDXL_SCHEDULER
    from make_sdxl_reference import tiny_components as sdxl_components

    torch.manual_seed(0)  # the twins' default init is overwritten; this only keeps construction quiet and fixed
    with tempfile.TemporaryDirectory() as tmp:
        tok = {}
        for folder, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
            write_tokenizer(pathlib.Path(tmp) / folder, pad)
            tok[folder] = CLIPTokenizer.from_pretrained(str(pathlib.Path(tmp) / folder))
        for refiner, name in ((False, "diffusers-tiny-sdxl"), (True, "diffusers-tiny-sdxl-refiner")):
            parts = {k: (m.half() if m is not None else None) for k, m in sdxl_components(refiner=refiner).items()}
            sched = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)
            if refiner:
                cls = StableDiffusionXLImg2ImgPipeline
                pipe = cls(**parts, tokenizer=None, tokenizer_2=tok["tokenizer_2"], scheduler=sched,
                           requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
            else:
                cls = StableDiffusionXLPipeline
                pipe = cls(**parts, **tok, scheduler=sched, force_zeros_for_empty_prompt=True)
            write_sdxl_folder(pipe, FIX / name)
            check_sdxl_folder(FIX / name, cls, parts, refiner)
            print("model_index.json:", json.loads((FIX / name / "model_index.json").read_text()))


def sd1_main():
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    unet, vae, clip = (m.half() for m in tiny_components())
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(pathlib.Path(tmp))
        tok.model_max_length = 77
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet,
                                       scheduler=PNDMScheduler.from_config(SD15_SCHEDULER), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        for safe, name in ((True, "diffusers-tiny-safetensors"), (False, "diffusers-tiny-bin")):
            write_folder(pipe, clip, FIX / name, safe)
            check_folder(FIX / name, unet, vae, clip)
    index = json.loads((FIX / "diffusers-tiny-safetensors" / "model_index.json").read_text())
    print("model_index.json:", index)


def main():
    from diffusers.utils import logging

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["sd1", "sdxl"], help="write only these folders (default: all)")
    a = ap.parse_args()
    logging.set_verbosity_error()
    if a.only in (None, "sd1"):
        sd1_main()
    if a.only in (None, "sdxl"):
        sdxl_main()


if __name__ == "__main__":
    main()
