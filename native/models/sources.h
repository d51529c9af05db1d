// Where a model's tensors come from, assembled into one TensorFile in the single-file LDM layout
// (family.h's key prefixes) before detection and loading, so the rest of the code knows one layout:
// a single file (.safetensors / .ckpt), or a diffusers folder (model_index.json, unet/, vae/,
// text_encoder/), and optionally a separate VAE file that replaces the checkpoint's VAE.
#pragma once
#include <string>

#include "io/tensor_file.h"
#include "models/family.h"
#include "models/layers.h"

namespace sdtorch {

// A single file, or a diffusers folder's unet/, vae/ and text_encoder/ weights (.safetensors, or .bin
// through the restricted unpickler; sharded *.index.json too) under LDM names. A folder's own word on
// prediction (scheduler_config.json) and training size (unet sample_size) goes into the metadata as
// "sdtorch.prediction" / "sdtorch.default_size", which detect_family reads.
TensorFile read_model(const std::string& path);

// Replaces `model`'s first_stage_model.* tensors with the VAE in `vae_path`: bare encoder.*/decoder.*
// keys (vae-ft-mse-840000 and the like), first_stage_model.* (a VAE cut from a checkpoint), or
// diffusers' AutoencoderKL names; any dtype. Throws naming the file when it holds no VAE or one whose
// shapes do not fit `vae`, the model's VAE network already built for `family` (a 16-channel SD3/FLUX
// VAE, say).
void replace_vae(TensorFile& model, const std::string& vae_path, const Family& family, const nn::Module& vae);

}  // namespace sdtorch
