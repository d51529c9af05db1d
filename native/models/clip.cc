#include "models/clip.h"

namespace sdtorch {

namespace {
LayerNorm layer_norm(int64_t width) { return LayerNorm(width, 1e-5); }
}  // namespace

ClipAttentionImpl::ClipAttentionImpl(int64_t width, int64_t heads) : heads(heads) {
  q_proj = register_module("q_proj", Linear(width, width));
  k_proj = register_module("k_proj", Linear(width, width));
  v_proj = register_module("v_proj", Linear(width, width));
  out_proj = register_module("out_proj", Linear(width, width));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x) {
  return out_proj(attention(q_proj(x), k_proj(x), v_proj(x), heads, /*causal=*/true));
}

ClipMlpImpl::ClipMlpImpl(int64_t width, int64_t hidden, bool quick_gelu) : quick_gelu(quick_gelu) {
  fc1 = register_module("fc1", Linear(width, hidden));
  fc2 = register_module("fc2", Linear(hidden, width));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  auto h = fc1(x);
  // quick GELU, as OpenAI's CLIP was trained; OpenCLIP's ViT-H uses nn.GELU (erf)
  return fc2(quick_gelu ? h * at::sigmoid(1.702 * h) : at::gelu(h));
}

ClipLayerImpl::ClipLayerImpl(const ClipConfig& c) {
  self_attn = register_module("self_attn", ClipAttention(c.width, c.heads));
  layer_norm1 = register_module("layer_norm1", layer_norm(c.width));
  mlp = register_module("mlp", ClipMlp(c.width, c.mlp, c.quick_gelu));
  layer_norm2 = register_module("layer_norm2", layer_norm(c.width));
}

at::Tensor ClipLayerImpl::forward(const at::Tensor& x) {
  auto h = x + self_attn(layer_norm1(x));
  return h + mlp(layer_norm2(h));
}

ClipEmbeddingsImpl::ClipEmbeddingsImpl(const ClipConfig& c) {
  token_embedding = register_module("token_embedding", Embedding(c.vocab, c.width));
  position_embedding = register_module("position_embedding", Embedding(c.positions, c.width));
}

ClipEncoderImpl::ClipEncoderImpl(const ClipConfig& c) {
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.layers; ++i) layers->push_back(ClipLayer(c));
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipConfig& c) {
  embeddings = register_module("embeddings", ClipEmbeddings(c));
  encoder = register_module("encoder", ClipEncoder(c));
  final_layer_norm = register_module("final_layer_norm", layer_norm(c.width));
}

ClipTextModelImpl::ClipTextModelImpl(const ClipConfig& c) : config(c) {
  text_model = register_module("text_model", ClipTextTransformer(c));
  if (c.projection > 0) text_projection = register_module("text_projection", Linear(c.width, c.projection, /*bias=*/false));
}

TextEncoding ClipTextModelImpl::forward(const at::Tensor& ids, int64_t skip, const at::Tensor& index, const at::Tensor& vectors,
                                        bool pooled) {
  auto& m = *text_model;
  auto positions = at::arange(ids.size(1), ids.options().dtype(at::kLong));
  auto tokens = m.embeddings->token_embedding(ids);
  if (index.defined() && index.numel()) {
    auto flat = tokens.reshape({-1, tokens.size(-1)}).clone();
    flat.index_copy_(0, index, vectors.to(flat.scalar_type()));
    tokens = flat.reshape(tokens.sizes());
  }
  auto x = tokens + m.embeddings->position_embedding(positions);
  const size_t layers = m.encoder->layers->size();
  const size_t used = layers - size_t(config.hidden_from_end + skip - 1);
  const size_t run = pooled && text_projection ? layers : used;
  TextEncoding out;
  for (size_t i = 0; i < run; ++i) {
    x = (*m.encoder->layers)[i]->as<ClipLayer>()->forward(x);
    if (i + 1 == used) out.context = config.context_norm ? m.final_layer_norm(x) : x;
  }
  if (pooled && text_projection) {
    auto last = m.final_layer_norm(x);
    auto eos = ids.argmax(-1);  // [B]: the first end token (the highest id)
    out.pooled = text_projection(last.index({at::arange(ids.size(0), eos.options()), eos}));
  }
  return out;
}

}  // namespace sdtorch
