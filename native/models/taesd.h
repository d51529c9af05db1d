// TAESD, the tiny autoencoder of Stable Diffusion's latent space (Ollin Boer Bohan,
// github.com/madebyollin/taesd; diffusers' AutoencoderTiny, models/autoencoders/vae.py EncoderTiny
// and DecoderTiny). Each half is a Sequential whose children are named by index, so the names are the
// keys of the published files (taesd_decoder.safetensors: "1.weight", "3.conv.0.weight", ...) under
// "encoder." / "decoder.". diffusers' "encoder.layers.N" is the published encoder's N; its
// "decoder.layers.N" the published decoder's N + 1 (index 0 there is the parameter-free Clamp).
//
// It works on the latents the UNet sees (its scaling factor is 1, not the VAE's 0.18215), and, like
// AutoencoderTiny, on images in [-1, 1] (the published networks take and give [0, 1]).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "io/tensor_file.h"
#include "models/layers.h"

namespace sdtorch {

// One half's structure, read from its weights: latent channels, the width of every layer, and the
// Blocks at each resolution (the published files: encoder {1, 3, 3, 3}, decoder {3, 3, 3, 1}, 64 wide).
struct TaesdConfig {
  int64_t latent = 4, channels = 64;
  std::vector<int64_t> blocks;
  int64_t scale() const { return int64_t(1) << (blocks.size() - 1); }  // pixels per latent cell
};

// conv.0 -> ReLU -> conv.2 -> ReLU -> conv.4, plus the input, then ReLU ("fuse"). The skip is the
// identity: a Block keeps its width in every TAESD.
struct TaesdBlockImpl : nn::Module {
  explicit TaesdBlockImpl(int64_t ch);
  at::Tensor forward(const at::Tensor& x);
  nn::Sequential conv{nullptr};
};
TORCH_MODULE(TaesdBlock);

struct TaesdImpl : nn::Module {
  // A half may be missing (a decoder file given alone).
  TaesdImpl(const std::optional<TaesdConfig>& encoder, const std::optional<TaesdConfig>& decoder);
  // Images [B,3,H,W] in [-1,1], H and W multiples of scale -> UNet latents [B,latent,H/scale,W/scale].
  // Throws without an encoder.
  at::Tensor encode(const at::Tensor& images);
  // UNet latents [B,latent,h,w] -> images [B,3,h·scale,w·scale], about [-1,1] (not clamped). Throws
  // without a decoder.
  at::Tensor decode(const at::Tensor& latents);
  const TaesdConfig& config() const { return decoder_config ? *decoder_config : *encoder_config; }
  std::optional<TaesdConfig> encoder_config, decoder_config;
  // conv(3, C), Block×n₀; per further level: conv(C, C, stride 2, no bias), Block×nᵢ; conv(C, latent).
  nn::Sequential encoder{nullptr};
  // Clamp tanh(x/3)·3, conv(latent, C), ReLU; per level: Block×nᵢ, then (but after the last)
  // Upsample(×2, nearest), conv(C, C, no bias); conv(C, 3).
  nn::Sequential decoder{nullptr};
};
TORCH_MODULE(Taesd);

// The TAESD in `paths` (a published half per file, or a diffusers AutoencoderTiny file with both), its
// structure read from the weights; on `device` in `dtype`, convolutions channels-last. Throws naming
// the file when it is no TAESD, when two files hold the same half, or when the halves do not match.
Taesd load_taesd(const std::vector<std::string>& paths, at::Device device, at::ScalarType dtype);

// Whether every key of `file` is of a TAESD layout ("N.weight", "N.conv.M.weight", "decoder.layers.N.*")
// and it has a Block: checkpoint_kind's test, so that a TAESD given as a checkpoint or VAE is named as such.
bool looks_like_taesd(const TensorFile& file);

}  // namespace sdtorch
