// Building blocks shared by CLIP, the VAE and the UNet. Shapes: images NCHW, sequences [B, N, C].
#pragma once
#include <torch/torch.h>

#include <functional>
#include <mutex>

namespace sdtorch {

namespace nn = torch::nn;

// With `prepack` on (set_prepack), a CPU float32 layer runs on a copy of its weight reordered once
// into oneDNN's blocked layout: the plain conv reorders the weight on every call, and oneDNN's linear
// on a packed weight beats MKL's GEMM with a separate bias copy by 5-25% at the UNet's shapes (the
// path PyTorch's inductor takes with freezing: mkldnn::_convolution_pointwise, _linear_pointwise).
// The copy is made at the layer's first call, for that call's input size, and remade when the
// weight's memory changes; then the plain weight's file-backed pages are handed back to the system.
// A layer holding a weight derives from it and computes through linear() / conv2d().
struct Prepackable {
  bool prepack = false;
  // With prepack: this 3x3 convolution runs by Winograd's algorithm (winograd.h; set_winograd).
  bool winograd = false;

 protected:
  at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
  // Prepacked, channels-last in and out.
  at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t stride, int64_t padding);

 private:
  bool packs(const at::Tensor& x, const at::Tensor& weight) const;
  // The packed copy of `weight`, made by `make()` when missing or stale.
  at::Tensor packed_weight(const at::Tensor& weight, const std::function<at::Tensor()>& make);
  friend void drop_prepacked(nn::Module&, bool);
  std::mutex packing;
  at::Tensor packed;                  // oneDNN tensor, or undefined
  const void* packed_from = nullptr;  // weight.data_ptr() it was made from
};

// Parameter-holding layers with the usual names (weight, bias) and no initialisation: every value
// comes from the checkpoint, so random init would only cost seconds at load time.
struct LinearImpl : nn::Module, Prepackable {
  LinearImpl(int64_t in, int64_t out, bool bias = true);
  at::Tensor forward(const at::Tensor& x) { return linear(x, weight, bias); }
  at::Tensor weight, bias;
};
TORCH_MODULE(Linear);

struct Conv2dImpl : nn::Module, Prepackable {
  Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, bool bias = true);
  at::Tensor forward(const at::Tensor& x) { return conv2d(x, weight, bias, stride, padding); }
  at::Tensor weight, bias;
  int64_t stride, padding;
};
TORCH_MODULE(Conv2d);

// Turns prepacking on or off for every layer in `module`.
void set_prepack(nn::Module& module, bool on);
// Which 3x3 convolutions of `module` (stride 1, padding 1, channels multiples of 16) run by Winograd
// F(4x4, 3x3) when prepacked: those with at least `min_channels` in and out and a weight of at most
// `max_weight_bytes` as float32. Their transformed weight takes four times the weight's memory, and
// the time they save grows with the activation's size, not the weight's: the small weights of the
// high-resolution levels are the ones worth it. {0, 0} turns it off.
struct WinogradRule {
  int64_t min_channels = 0, max_weight_bytes = 0;
};
void set_winograd(nn::Module& module, WinogradRule rule);
// How many convolutions of `module` run by Winograd (prepacking on and the rule's choice).
int64_t winograd_convs(nn::Module& module);
// Whether `module` has a layer with prepacking on.
bool prepacks(nn::Module& module);
// Drops the packed copies of every layer in `module`, to be remade from the weights as they are now
// (after a LoRA changed them, a move to another device or dtype); with `winograd_only`, only the
// Winograd-transformed ones (4x their weights: dropped while another network runs, remade at the next call).
void drop_prepacked(nn::Module& module, bool winograd_only = false);

struct GroupNormImpl : nn::Module {
  GroupNormImpl(int64_t groups, int64_t channels, double eps);
  at::Tensor forward(const at::Tensor& x) { return at::group_norm(x, groups, weight, bias, eps); }
  at::Tensor weight, bias;
  int64_t groups;
  double eps;
};
TORCH_MODULE(GroupNorm);

struct LayerNormImpl : nn::Module {
  LayerNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) { return at::layer_norm(x, {weight.size(0)}, weight, bias, eps); }
  at::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

struct EmbeddingImpl : nn::Module {
  EmbeddingImpl(int64_t count, int64_t dim);
  at::Tensor forward(const at::Tensor& ids) { return at::embedding(weight, ids); }
  at::Tensor weight;
};
TORCH_MODULE(Embedding);

// [B,C,H,W] <-> [B,HW,C]. Free (no copy) for the channels-last tensors the networks run on.
at::Tensor to_sequence(const at::Tensor& x);
at::Tensor to_image(const at::Tensor& seq, at::IntArrayRef sizes);

// Multi-head attention over [B, N, C] projections through SDPA (flash/mem-efficient where available).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, bool causal = false);

// Cross/self attention with the LDM names: to_q, to_k, to_v (no bias), to_out.0.
struct CrossAttentionImpl : nn::Module {
  CrossAttentionImpl(int64_t dim, int64_t context_dim, int64_t heads);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context);
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  nn::ModuleList to_out;
  int64_t heads;
};
TORCH_MODULE(CrossAttention);

// GEGLU feed-forward: ff.net.0.proj (dim -> 8 dim, half gates the other half), ff.net.2 (4 dim -> dim).
struct GEGLUImpl : nn::Module {
  GEGLUImpl(int64_t dim, int64_t inner);
  at::Tensor forward(const at::Tensor& x);
  Linear proj{nullptr};
};
TORCH_MODULE(GEGLU);

struct FeedForwardImpl : nn::Module {
  FeedForwardImpl(int64_t dim, int64_t mult = 4);
  at::Tensor forward(const at::Tensor& x);
  nn::Sequential net;
};
TORCH_MODULE(FeedForward);


}  // namespace sdtorch
