#include "models/layers.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include "io/tensor_file.h"

namespace sdtorch {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (has_bias) bias = register_parameter("bias", torch::empty({out}));
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool has_bias)
    : stride(stride), padding(padding) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  if (has_bias) bias = register_parameter("bias", torch::empty({out}));
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) {
  if (!prepack || !x.device().is_cpu() || x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      !weight.device().is_cpu() || !at::hasMKLDNN())
    return at::conv2d(x, weight, bias, stride, padding);
  at::Tensor w = packed_for(x);
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_convolution_pointwise", "");
  const std::vector<int64_t> pad{padding, padding}, step{stride, stride}, one{1, 1};
  torch::jit::Stack stack{x.contiguous(at::MemoryFormat::ChannelsLast), w, bias.defined() ? c10::IValue(bias) : c10::IValue(), pad, step, one, int64_t(1),
                          std::string("none"), c10::List<std::optional<at::Scalar>>(), c10::IValue()};
  op.callBoxed(&stack);
  return stack.back().toTensor();
}

at::Tensor Conv2dImpl::packed_for(const at::Tensor& x) {
  std::lock_guard<std::mutex> lock(packing);
  if (!packed.defined() || packed_from != weight.data_ptr()) {
    torch::NoGradGuard no_grad;
    packed = at::Tensor();  // the old copy goes before the new one is made
    packed = at::mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), {padding, padding}, {stride, stride}, {1, 1}, 1, x.sizes());
    packed_from = weight.data_ptr();
    // The plain weight is read again only by a LoRA or a move: its pages (file-backed) can go.
    reclaim_pages(weight);
  }
  return packed;
}

void drop_prepacked(nn::Module& module) {
  for (const auto& m : module.modules()) {
    if (auto* conv = m->as<Conv2dImpl>()) {
      std::lock_guard<std::mutex> lock(conv->packing);
      conv->packed = at::Tensor();
      conv->packed_from = nullptr;
    }
  }
}

bool prepacks(nn::Module& module) {
  for (const auto& m : module.modules())
    if (auto* conv = m->as<Conv2dImpl>(); conv && conv->prepack) return true;
  return false;
}

void set_prepack(nn::Module& module, bool on) {
  drop_prepacked(module);
  for (const auto& m : module.modules())
    if (auto* conv = m->as<Conv2dImpl>()) conv->prepack = on;
}

GroupNormImpl::GroupNormImpl(int64_t groups, int64_t channels, double eps) : groups(groups), eps(eps) {
  weight = register_parameter("weight", torch::empty({channels}));
  bias = register_parameter("bias", torch::empty({channels}));
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps) : eps(eps) {
  weight = register_parameter("weight", torch::empty({dim}));
  bias = register_parameter("bias", torch::empty({dim}));
}

EmbeddingImpl::EmbeddingImpl(int64_t count, int64_t dim) { weight = register_parameter("weight", torch::empty({count, dim})); }

at::Tensor to_sequence(const at::Tensor& x) { return x.permute({0, 2, 3, 1}).reshape({x.size(0), -1, x.size(1)}); }

at::Tensor to_image(const at::Tensor& seq, at::IntArrayRef sizes) {
  return seq.reshape({sizes[0], sizes[2], sizes[3], sizes[1]}).permute({0, 3, 1, 2});
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, bool causal) {
  // [B, N, H*D] -> [B, H, N, D]
  auto split = [heads](const at::Tensor& t) { return t.unflatten(-1, {heads, -1}).transpose(1, 2); };
  auto o = at::scaled_dot_product_attention(split(q), split(k), split(v), {}, 0.0, causal);
  return o.transpose(1, 2).flatten(2);
}

CrossAttentionImpl::CrossAttentionImpl(int64_t dim, int64_t context_dim, int64_t heads) : heads(heads) {
  to_q = register_module("to_q", Linear(dim, dim, false));
  to_k = register_module("to_k", Linear(context_dim, dim, false));
  to_v = register_module("to_v", Linear(context_dim, dim, false));
  to_out = register_module("to_out", nn::ModuleList(Linear(dim, dim)));
}

at::Tensor CrossAttentionImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  auto o = attention(to_q(x), to_k(context), to_v(context), heads);
  return to_out[0]->as<Linear>()->forward(o);
}

GEGLUImpl::GEGLUImpl(int64_t dim, int64_t inner) { proj = register_module("proj", Linear(dim, inner * 2)); }

at::Tensor GEGLUImpl::forward(const at::Tensor& x) {
  auto parts = proj(x).chunk(2, -1);
  return parts[0] * at::gelu(parts[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult) {
  net = register_module("net", nn::Sequential(GEGLU(dim, dim * mult), nn::Dropout(0.0), Linear(dim * mult, dim)));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) { return net->forward(x); }

}  // namespace sdtorch
