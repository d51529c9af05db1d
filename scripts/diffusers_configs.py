"""The diffusers folder configs of the real models, typed in, for offline from_single_file(config=...).

diffusers' from_single_file needs a diffusers folder of configs (model_index.json, each component's
config.json or scheduler_config.json, the tokenizer's files) for the model a checkpoint is; online it
downloads them from the Hub repo named in single_file_utils.DIFFUSERS_DEFAULT_PIPELINE_PATHS. Here
they are written to a local folder instead, with the values of those repos:

  sd15          stable-diffusion-v1-5/stable-diffusion-v1-5
  sd15-inpaint  stable-diffusion-v1-5/stable-diffusion-inpainting   (UNet in_channels 9)
  sd21          stabilityai/stable-diffusion-2-1                    (v_prediction, 768)
  sd2-inpaint   stabilityai/stable-diffusion-2-inpainting           (UNet in_channels 9, epsilon)
  sdxl          stabilityai/stable-diffusion-xl-base-1.0            (StableDiffusionXLPipeline)
  sdxl-refiner  stabilityai/stable-diffusion-xl-refiner-1.0         (StableDiffusionXLImg2ImgPipeline)

SD 2.x: OpenCLIP ViT-H/14 text tower as transformers' CLIPTextModel with 23 layers (diffusers drops
the last of OpenCLIP's 24: SD 2 conditions on the penultimate layer, then ln_final), hidden_act gelu;
UNet heads [5, 10, 20, 20] (64 channels each), linear projections, 1024-wide cross-attention. The
tokenizer folders are transformers 4's layout (vocab.json, merges.txt, special_tokens_map.json,
tokenizer_config.json), the vocabulary derived from vocab/bpe_simple_vocab_16e6.txt.gz as
make_tokenizer_fixture.py does; SD 2's pads with "!" (id 0), SD 1.x's with <|endoftext|> (49407).

SDXL: text_encoder CLIP ViT-L/14 (tokenizer pads with <|endoftext|>), text_encoder_2 OpenCLIP ViT-bigG/14 as
CLIPTextModelWithProjection (32 layers, 1280, 20 heads, mlp 5120, gelu, projection_dim 1280; tokenizer_2 pads
with "!", id 0); UNet with addition_embed_type "text_time" (addition_time_embed_dim 256); VAE scaling_factor
0.13025, force_upcast; EulerDiscreteScheduler with the repos' scheduler_config (scaled_linear 0.00085..0.012,
timestep_spacing "leading", steps_offset 1, interpolation_type "linear"). The refiner has no text_encoder
/ tokenizer, requires_aesthetics_score true and force_zeros_for_empty_prompt false; the base
force_zeros_for_empty_prompt true.
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_tokenizer_fixture import build_tokenizer  # noqa: E402

SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, clip_sample=False)

VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "norm_num_groups": 32, "out_channels": 3, "sample_size": 512, "up_block_types": ["UpDecoderBlock2D"] * 4,
}

UNET_SD15 = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
UNET_SD2 = {**UNET_SD15, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
            "use_linear_projection": True, "sample_size": 96, "upcast_attention": True}

CLIP_L = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
    "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
    "projection_dim": 768, "vocab_size": 49408,
}
OPEN_CLIP_H = {**CLIP_L, "hidden_act": "gelu", "hidden_size": 1024, "intermediate_size": 4096,
               "num_attention_heads": 16, "num_hidden_layers": 23, "projection_dim": 512}

VAE_SDXL = {**VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
OPEN_CLIP_BIGG = {**CLIP_L, "architectures": ["CLIPTextModelWithProjection"], "hidden_act": "gelu", "hidden_size": 1280,
                  "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32, "projection_dim": 1280}
SDXL_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                      interpolation_type="linear", num_train_timesteps=1000, prediction_type="epsilon", sample_max_value=1.0,
                      set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, timestep_spacing="leading",
                      trained_betas=None, use_karras_sigmas=False)
_SDXL_UNET_COMMON = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "center_input_sample": False,
    "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "cross_attention_norm": None, "downsample_padding": 1, "dual_cross_attention": False, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": None, "num_class_embeds": None,
    "only_cross_attention": False, "out_channels": 4, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default", "sample_size": 128, "time_cond_proj_dim": None, "time_embedding_act_fn": None,
    "time_embedding_dim": None, "time_embedding_type": "positional", "timestep_post_act": None, "upcast_attention": None,
    "use_linear_projection": True,
}
UNET_SDXL = {**_SDXL_UNET_COMMON, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
             "cross_attention_dim": 2048, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "projection_class_embeddings_input_dim": 2816, "transformer_layers_per_block": [1, 2, 10],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}
UNET_SDXL_REFINER = {**_SDXL_UNET_COMMON, "attention_head_dim": [6, 12, 24, 24], "block_out_channels": [384, 768, 1536, 1536],
                     "cross_attention_dim": 1280,
                     "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                     "projection_class_embeddings_input_dim": 2560, "transformer_layers_per_block": 4,
                     "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}
SDXL_FOLDERS = {
    # name: (pipeline class, unet, text_encoder config or None, model_index extras)
    "sdxl": ("StableDiffusionXLPipeline", UNET_SDXL, CLIP_L, {"force_zeros_for_empty_prompt": True}),
    "sdxl-refiner": ("StableDiffusionXLImg2ImgPipeline", UNET_SDXL_REFINER, None,
                     {"force_zeros_for_empty_prompt": False, "requires_aesthetics_score": True}),
}

FOLDERS = {
    # name: (pipeline class, unet, text encoder, scheduler class and config, tokenizer pad token)
    "sd15": ("StableDiffusionPipeline", UNET_SD15, CLIP_L, ("PNDMScheduler", SD15_SCHEDULER), "<|endoftext|>"),
    "sd15-inpaint": ("StableDiffusionInpaintPipeline", {**UNET_SD15, "in_channels": 9}, CLIP_L,
                     ("PNDMScheduler", SD15_SCHEDULER), "<|endoftext|>"),
    "sd21": ("StableDiffusionPipeline", UNET_SD2, OPEN_CLIP_H,
             ("DDIMScheduler", {**SD15_SCHEDULER, "prediction_type": "v_prediction"}), "!"),
    "sd2-inpaint": ("StableDiffusionInpaintPipeline", {**UNET_SD2, "in_channels": 9, "sample_size": 64,
                                                        "upcast_attention": False}, OPEN_CLIP_H,
                    ("PNDMScheduler", SD15_SCHEDULER), "!"),
}


def write_tokenizer(folder: pathlib.Path, pad: str):
    """transformers 4's CLIPTokenizer folder: vocab.json, merges.txt and the two special-token files."""
    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(folder)  # writes vocab.json and merges.txt (and checks them)
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": pad, "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": 77,
              "tokenizer_class": "CLIPTokenizer", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def write_sdxl_folder(name: str, root: pathlib.Path) -> pathlib.Path:
    """root/name for sdxl / sdxl-refiner (the layout of the two repos)."""
    pipeline, unet, clip, extras = SDXL_FOLDERS[name]
    out = root / name
    index = {"_class_name": pipeline, **extras, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"] if clip else [None, None],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"] if clip else [None, None],
             "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    parts = {"unet/config.json": unet, "vae/config.json": VAE_SDXL, "text_encoder_2/config.json": OPEN_CLIP_BIGG,
             "scheduler/scheduler_config.json": {"_class_name": "EulerDiscreteScheduler", **SDXL_SCHEDULER},
             "model_index.json": index}
    if clip:
        parts["text_encoder/config.json"] = clip
    for rel, value in parts.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(json.dumps(value, indent=2) + "\n")
    if clip:
        write_tokenizer(out / "tokenizer", "<|endoftext|>")
    write_tokenizer(out / "tokenizer_2", "!")
    return out


def write_config_folder(name: str, root: pathlib.Path) -> pathlib.Path:
    """root/name: a diffusers folder without weights, enough for from_single_file(config=..., local_files_only=True)."""
    if name in SDXL_FOLDERS:
        return write_sdxl_folder(name, root)
    pipeline, unet, clip, (scheduler, scheduler_config), pad = FOLDERS[name]
    out = root / name
    parts = {
        "unet/config.json": unet,
        "vae/config.json": VAE,
        "text_encoder/config.json": clip,
        "scheduler/scheduler_config.json": {"_class_name": scheduler, **scheduler_config},
        "model_index.json": {
            "_class_name": pipeline, "feature_extractor": [None, None], "requires_safety_checker": False,
            "safety_checker": [None, None], "scheduler": ["diffusers", scheduler],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        },
    }
    for rel, value in parts.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(json.dumps(value, indent=2) + "\n")
    write_tokenizer(out / "tokenizer", pad)
    return out
