#include "models/layers.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include "io/tensor_file.h"
#include "models/winograd.h"

namespace sdtorch {

namespace {

// mkldnn's ops by name: their schemas live in libtorch's registry, not in its headers.
at::Tensor call(const c10::OperatorHandle& op, torch::jit::Stack stack) {
  op.callBoxed(&stack);
  return stack.back().toTensor();
}

c10::OperatorHandle op(const char* name) { return c10::Dispatcher::singleton().findSchemaOrThrow(name, ""); }

c10::IValue optional(const at::Tensor& t) { return t.defined() ? c10::IValue(t) : c10::IValue(); }

}  // namespace

bool Prepackable::packs(const at::Tensor& x, const at::Tensor& weight) const {
  return prepack && x.device().is_cpu() && x.scalar_type() == at::kFloat && weight.device().is_cpu() &&
         weight.scalar_type() == at::kFloat && at::hasMKLDNN();
}

at::Tensor Prepackable::packed_weight(const at::Tensor& weight, const std::function<at::Tensor()>& make) {
  std::lock_guard<std::mutex> lock(packing);
  if (!packed.defined() || packed_from != weight.data_ptr()) {
    torch::NoGradGuard no_grad;
    packed = at::Tensor();  // the old copy goes before the new one is made
    packed = make();
    packed_from = weight.data_ptr();
    // The plain weight is read again only by a LoRA or a move: its pages (file-backed) can go.
    reclaim_pages(weight);
  }
  return packed;
}

at::Tensor Prepackable::linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!packs(x, weight)) return at::linear(x, weight, bias);
  const int64_t rows = x.numel() / x.size(-1);
  static const auto reorder = op("mkldnn::_reorder_linear_weight");
  static const auto linear = op("mkldnn::_linear_pointwise");
  at::Tensor w = packed_weight(weight, [&] { return call(reorder, {weight, rows}); });
  return call(linear, {x, w, optional(bias), std::string("none"), c10::List<std::optional<at::Scalar>>(), c10::IValue()});
}

at::Tensor Prepackable::conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t stride, int64_t padding) {
  if (!packs(x, weight)) return at::conv2d(x, weight, bias, stride, padding);
  if (winograd) return winograd_conv3x3(x, packed_weight(weight, [&] { return winograd_weight(weight); }), bias);
  const std::vector<int64_t> pad{padding, padding}, step{stride, stride}, one{1, 1};
  at::Tensor w = packed_weight(weight, [&] { return at::mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), pad, step, one, 1, x.sizes()); });
  static const auto conv = op("mkldnn::_convolution_pointwise");
  return call(conv, {x.contiguous(at::MemoryFormat::ChannelsLast), w, optional(bias), pad, step, one, int64_t(1), std::string("none"),
                     c10::List<std::optional<at::Scalar>>(), c10::IValue()});
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (has_bias) bias = register_parameter("bias", torch::empty({out}));
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool has_bias)
    : stride(stride), padding(padding) {
  weight = register_parameter("weight", torch::empty({out, in, kernel, kernel}));
  if (has_bias) bias = register_parameter("bias", torch::empty({out}));
}

namespace {
template <typename F>
void each_prepackable(nn::Module& module, F f) {
  for (const auto& m : module.modules())
    if (auto* p = dynamic_cast<Prepackable*>(m.get())) f(*p);
}
}  // namespace

void drop_prepacked(nn::Module& module, bool winograd_only) {
  each_prepackable(module, [winograd_only](Prepackable& p) {
    if (winograd_only && !p.winograd) return;
    std::lock_guard<std::mutex> lock(p.packing);
    p.packed = at::Tensor();
    p.packed_from = nullptr;
  });
}

bool prepacks(nn::Module& module) {
  bool any = false;
  each_prepackable(module, [&](Prepackable& p) { any = any || p.prepack; });
  return any;
}

void set_winograd(nn::Module& module, WinogradRule rule) {
  drop_prepacked(module);
  for (const auto& m : module.modules())
    if (auto* conv = dynamic_cast<Conv2dImpl*>(m.get())) {
      const at::Tensor& w = conv->weight;
      const int64_t out = w.size(0), in = w.size(1);
      conv->winograd = w.size(2) == 3 && w.size(3) == 3 && conv->stride == 1 && conv->padding == 1 && in % 16 == 0 && out % 16 == 0 &&
                       std::min(in, out) >= rule.min_channels && w.numel() * 4 <= rule.max_weight_bytes;
    }
}

int64_t winograd_convs(nn::Module& module) {
  int64_t n = 0;
  each_prepackable(module, [&](Prepackable& p) { n += p.prepack && p.winograd; });
  return n;
}

void set_prepack(nn::Module& module, bool on) {
  drop_prepacked(module);
  each_prepackable(module, [on](Prepackable& p) { p.prepack = on; });
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
  // [..., 2 inner] -> value half times GELU(gate half), in place: no [..., inner] temporaries.
  auto parts = proj(x).chunk(2, -1);
  return parts[0].mul_(at::gelu_(parts[1]));
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult) {
  net = register_module("net", nn::Sequential(GEGLU(dim, dim * mult), nn::Dropout(0.0), Linear(dim * mult, dim)));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) { return net->forward(x); }

}  // namespace sdtorch
