// The CLIP text encoders: ViT-L/14 (SD 1.x, SDXL's first), OpenCLIP ViT-H/14 (SD 2.x) and ViT-bigG/14
// (SDXL's second, with its text projection): one transformer with exact or quick GELU. Names mirror
// transformers' CLIPTextModel(WithProjection) under the family's prefix (`cond_stage_model.transformer.`,
// `conditioner.embedders.N.transformer.`); OpenCLIP's `*.model.*` keys load under them (models/keys.h).
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

// transformers' CLIPTextTransformer (`text_model.*`).
struct ClipTextTransformerImpl : nn::Module {
  explicit ClipTextTransformerImpl(const ClipConfig& c);
  ClipEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

struct TextEncoding {
  at::Tensor context;  // [B, T, width]
  at::Tensor pooled;   // [B, projection]: undefined unless asked for (and the encoder has a projection)
};

struct ClipTextModelImpl : nn::Module {
  explicit ClipTextModelImpl(const ClipConfig& c);
  // ids int64 [B, T] -> context [B, T, width]: the hidden state `hidden_from_end + skip - 1` layers
  // before the last, through the final layer norm when the config says so (skip = A1111's "Clip
  // skip": 1 = the family's own layer, 2 = one earlier, ...).
  // pooled: also the last layer's output, final-normed, at each row's first end token (the highest
  // id: argmax, as open_clip and transformers pool), times text_projection [B, projection].
  // inject: the token-embedding rows at flat positions `index` [N] (b * T + t) are replaced by
  // `vectors` [N, width] (textual-inversion embeddings, as A1111's EmbeddingsWithFixes).
  TextEncoding forward(const at::Tensor& ids, int64_t skip = 1, const at::Tensor& index = {}, const at::Tensor& vectors = {},
                       bool pooled = false);
  ClipConfig config;
  ClipTextTransformer text_model{nullptr};
  Linear text_projection{nullptr};  // [projection, width], no bias; only when config.projection > 0
};
TORCH_MODULE(ClipTextModel);

}  // namespace sdtorch
