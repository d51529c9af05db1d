// diffusers' module names -> the LDM names sdtorch loads by, by rule from the block structure (no
// per-key table). Used for diffusers folders (unet/, vae/, text_encoder/) and for LoRAs in diffusers'
// or PEFT's spelling.
#pragma once
#include <optional>
#include <string>

#include "models/family.h"

namespace sdtorch {

// diffusers' UNet2DConditionModel -> the LDM UNet: a module or parameter path relative to the UNet
//   "down_blocks.1.resnets.0.conv1"        -> "input_blocks.4.0.in_layers.2"
//   "up_blocks.0.upsamplers.0.conv.weight" -> "output_blocks.2.1.conv.weight"
// Kohya's flattened names work too ("down_blocks_1_attentions_0_proj_in" ->
// "input_blocks.4.1_proj_in"): the parts the rule rewrites are written with '.', the rest is kept as
// given. nullopt when the path is not in diffusers' spelling (or names a block `unet` lacks). The text
// encoder needs no map: both layouts use transformers' CLIP names below `text_model.`.
std::optional<std::string> diffusers_unet_to_ldm(const std::string& path, const UNetConfig& unet);

// diffusers' AutoencoderKL -> LDM's first stage model, parameter paths relative to the VAE:
//   "encoder.down_blocks.1.resnets.0.conv_shortcut.weight" -> "encoder.down.1.block.0.nin_shortcut.weight"
//   "decoder.up_blocks.0.upsamplers.0.conv.bias"            -> "decoder.up.3.upsample.conv.bias" (4 levels)
//   "decoder.mid_block.attentions.0.to_q.weight" (or .query) -> "decoder.mid.attn_1.q.weight"
// nullopt when the path is not in diffusers' spelling. (Attention weights stay [C, C]: loading
// reshapes them to the 1x1 convs.)
std::optional<std::string> diffusers_vae_to_ldm(const std::string& path, const VaeConfig& vae);

}  // namespace sdtorch
