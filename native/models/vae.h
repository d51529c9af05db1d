// The SD 1.x autoencoder (KL-f8). Names mirror `first_stage_model.*`.
#pragma once
#include "models/family.h"
#include "models/layers.h"

namespace sdtorch {

// norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus a 1x1 nin_shortcut when widths differ.
struct VaeResBlockImpl : nn::Module {
  VaeResBlockImpl(int64_t in, int64_t out, int64_t groups);
  at::Tensor forward(const at::Tensor& x);
  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};
TORCH_MODULE(VaeResBlock);

// Single-head self-attention over the H*W positions, q/k/v/proj_out as 1x1 convs.
struct VaeAttentionImpl : nn::Module {
  VaeAttentionImpl(int64_t ch, int64_t groups);
  at::Tensor forward(const at::Tensor& x);
  GroupNorm norm{nullptr};
  Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(VaeAttention);

struct VaeMidImpl : nn::Module {
  VaeMidImpl(int64_t ch, int64_t groups);
  at::Tensor forward(const at::Tensor& x);
  VaeResBlock block_1{nullptr}, block_2{nullptr};
  VaeAttention attn_1{nullptr};
};
TORCH_MODULE(VaeMid);

// One resolution level: `block.N`, then `downsample.conv` / `upsample.conv` where the level has one.
struct VaeLevelImpl : nn::Module {
  VaeLevelImpl(int64_t in, int64_t out, int64_t blocks, int64_t groups, const char* resample);
  at::Tensor forward(at::Tensor x);
  nn::ModuleList block;
  Conv2d resample{nullptr};
  bool down = false;
};
TORCH_MODULE(VaeLevel);

struct VaeEncoderImpl : nn::Module {
  explicit VaeEncoderImpl(const VaeConfig& c);
  at::Tensor forward(const at::Tensor& x);  // [B,3,H,W] -> [B,2z,H/8,W/8]
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  nn::ModuleList down;
  VaeMid mid{nullptr};
  GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

struct VaeDecoderImpl : nn::Module {
  explicit VaeDecoderImpl(const VaeConfig& c);
  at::Tensor forward(const at::Tensor& z);  // [B,z,h,w] -> [B,3,8h,8w]
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  VaeMid mid{nullptr};
  nn::ModuleList up;  // up.N is applied from the deepest level (N = levels-1) down to 0
  GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

struct AutoencoderKLImpl : nn::Module {
  explicit AutoencoderKLImpl(const VaeConfig& c);
  // [B,3,H,W] in [-1,1] -> cat(mean, logvar) [B,8,H/8,W/8]; tiles of `tile` pixels when > 0 and smaller.
  at::Tensor encode(const at::Tensor& image, int64_t tile = 0);
  // Unscaled latents [B,4,h,w] -> [B,3,8h,8w]; tiles of `tile` latent cells when > 0 and smaller.
  at::Tensor decode(const at::Tensor& z, int64_t tile = 0);
  // Winograd (layers.h) by `rule` for the convs at the image's full, half and quarter size, where
  // the activations are large for the weights; none at the deepest level (512-channel weights over
  // 1/8-size activations: little time saved for 4x their memory).
  void set_winograd(WinogradRule rule);
  int64_t scale;  // pixels per latent cell
  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

}  // namespace sdtorch
