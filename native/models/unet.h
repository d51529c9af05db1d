// The SD 1.x / 2.x / SDXL denoising UNet. Names mirror `model.diffusion_model.*`: input_blocks.N.M,
// middle_block.M, output_blocks.N.M, time_embed, label_emb (SDXL), out.
#pragma once
#include "models/family.h"
#include "models/layers.h"

namespace sdtorch {

// Everything that can sit in an input/middle/output block: called with the time embedding and the
// text context, each layer uses what it needs. `skip_size` is the spatial size an upsampler must
// reach (odd latent sizes round down on the way in).
struct UNetLayer : nn::Module {
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor& context,
                             at::IntArrayRef skip_size) = 0;
};

// A bare conv whose parameters sit directly at `input_blocks.0.0.{weight,bias}`.
struct ConvLayer : UNetLayer, Prepackable {
  ConvLayer(int64_t in, int64_t out);
  at::Tensor forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, at::IntArrayRef) override;
  at::Tensor weight, bias;
};

struct ResBlock : UNetLayer {
  ResBlock(int64_t in, int64_t out, int64_t emb_dim, int64_t groups);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor&, at::IntArrayRef) override;
  nn::Sequential in_layers, emb_layers, out_layers;
  Conv2d skip_connection{nullptr};
};

struct BasicTransformerBlockImpl : nn::Module {
  BasicTransformerBlockImpl(int64_t dim, int64_t context_dim, int64_t heads);
  at::Tensor forward(at::Tensor x, const at::Tensor& context);
  CrossAttention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

struct SpatialTransformer : UNetLayer {
  // linear: proj_in/proj_out are Linear [C, C] over the token sequence (SD 2.x, SDXL), else 1x1 convs;
  // depth: transformer blocks in sequence (SDXL: up to 10).
  SpatialTransformer(int64_t ch, int64_t context_dim, int64_t heads, int64_t groups, bool linear, int64_t depth);
  at::Tensor forward(const at::Tensor& x, const at::Tensor&, const at::Tensor& context, at::IntArrayRef) override;
  GroupNorm norm{nullptr};
  Conv2d proj_in{nullptr}, proj_out{nullptr};
  Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};
  nn::ModuleList transformer_blocks;
};

struct Downsample : UNetLayer {
  explicit Downsample(int64_t ch);
  at::Tensor forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, at::IntArrayRef) override;
  Conv2d op{nullptr};
};

struct Upsample : UNetLayer {
  explicit Upsample(int64_t ch);
  at::Tensor forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, at::IntArrayRef skip_size) override;
  Conv2d conv{nullptr};
};

// LDM's TimestepEmbedSequential: layers registered as "0", "1", "2".
struct UNetBlockImpl : nn::Module {
  void add(std::shared_ptr<UNetLayer> layer);
  at::Tensor forward(at::Tensor x, const at::Tensor& emb, const at::Tensor& context, at::IntArrayRef skip_size = {});
  std::vector<std::shared_ptr<UNetLayer>> layers;
};
TORCH_MODULE(UNetBlock);

// Everything a UNet is conditioned on besides x and t, in one object so that new inputs need no new
// signature. SDXL's vector input y = cat(text_embeds, sinusoids of time_ids) (diffusers'
// added_cond_kwargs; sgm computes the same y in its conditioner).
struct Conditioning {
  at::Tensor context;      // [B, tokens, context width]: cross-attention keys/values
  at::Tensor concat;       // optional [B, in - latent channels, h, w]: joined to x along channels
  at::Tensor text_embeds;  // SDXL: [B, pooled width], the projected pooled text of the last encoder
  at::Tensor time_ids;     // SDXL: [B, n] pixel sizes / crop offsets / aesthetic score (Family::time_ids)
};

struct UNetModelImpl : nn::Module {
  explicit UNetModelImpl(const UNetConfig& c);
  // x [B,C,h,w], t [B] (float or int timesteps) -> the prediction [B,out,h,w] (eps or v)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const Conditioning& cond);
  UNetConfig config;
  nn::Sequential time_embed, out;
  nn::ModuleList label_emb{nullptr};  // SDXL: [Sequential(Linear(adm_in, emb), SiLU, Linear(emb, emb))]
  std::vector<UNetBlock> input_blocks, output_blocks;
  UNetBlock middle_block{nullptr};
};
TORCH_MODULE(UNetModel);

// Sinusoidal embedding as diffusers computes it (flip_sin_to_cos, shift 0): [B] -> [B, dim] fp32.
at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim);

}  // namespace sdtorch
