// The CLIP text encoder: ViT-L/14 (SD 1.x) and OpenCLIP ViT-H/14 (SD 2.x, same transformer with
// exact GELU). Names mirror transformers' `cond_stage_model.transformer.text_model.*`; OpenCLIP's
// `cond_stage_model.model.*` keys load under them (models/keys.h).
#pragma once
#include "models/family.h"
#include "models/layers.h"

namespace sdtorch {

struct ClipAttentionImpl : nn::Module {
  ClipAttentionImpl(int64_t width, int64_t heads);
  at::Tensor forward(const at::Tensor& x);  // causal self-attention, [B, 77, C]
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads;
};
TORCH_MODULE(ClipAttention);

struct ClipMlpImpl : nn::Module {
  ClipMlpImpl(int64_t width, int64_t hidden, bool quick_gelu);
  at::Tensor forward(const at::Tensor& x);  // fc2(act(fc1(x))), act = quick GELU or GELU
  Linear fc1{nullptr}, fc2{nullptr};
  bool quick_gelu;
};
TORCH_MODULE(ClipMlp);

struct ClipLayerImpl : nn::Module {
  explicit ClipLayerImpl(const ClipConfig& c);
  at::Tensor forward(const at::Tensor& x);  // pre-norm residual block
  LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipAttention self_attn{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipLayer);

struct ClipEmbeddingsImpl : nn::Module {
  explicit ClipEmbeddingsImpl(const ClipConfig& c);
  Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(ClipEmbeddings);

struct ClipEncoderImpl : nn::Module {
  explicit ClipEncoderImpl(const ClipConfig& c);
  nn::ModuleList layers;
};
TORCH_MODULE(ClipEncoder);

struct ClipTextModelImpl : nn::Module {
  explicit ClipTextModelImpl(const ClipConfig& c);
  // ids int64 [B, T] -> hidden state [B, T, width] after `layers - (skip - 1)` layers, then the final
  // layer norm (skip = A1111's "Clip skip": 1 = the last layer, 2 = the penultimate, ...).
  // inject: the token-embedding rows at flat positions `index` [N] (b * T + t) are replaced by
  // `vectors` [N, width] (textual-inversion embeddings, as A1111's EmbeddingsWithFixes).
  at::Tensor forward(const at::Tensor& ids, int64_t skip = 1, const at::Tensor& index = {}, const at::Tensor& vectors = {});
  ClipEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTextModel);

}  // namespace sdtorch
