#include "models/vae.h"

#include "models/vae_tiling.h"

namespace sdtorch {

namespace {
constexpr double kEps = 1e-6;
}

VaeResBlockImpl::VaeResBlockImpl(int64_t in, int64_t out, int64_t groups) {
  norm1 = register_module("norm1", GroupNorm(groups, in, kEps));
  conv1 = register_module("conv1", Conv2d(in, out, 3, 1, 1));
  norm2 = register_module("norm2", GroupNorm(groups, out, kEps));
  conv2 = register_module("conv2", Conv2d(out, out, 3, 1, 1));
  if (in != out) nin_shortcut = register_module("nin_shortcut", Conv2d(in, out, 1));
}

namespace {
// SiLU over a fresh tensor, in place: at 512x512 each full-size temporary of the decoder is 134-268 MB.
at::Tensor silu_fresh(at::Tensor fresh) { return at::silu_(fresh); }
}  // namespace

at::Tensor VaeResBlockImpl::forward(const at::Tensor& x) {
  auto h = conv1(silu_fresh(norm1(x)));
  h = conv2(silu_fresh(norm2(h)));
  return h.add_(nin_shortcut ? nin_shortcut(x) : x);
}

VaeAttentionImpl::VaeAttentionImpl(int64_t ch, int64_t groups) {
  norm = register_module("norm", GroupNorm(groups, ch, kEps));
  q = register_module("q", Conv2d(ch, ch, 1));
  k = register_module("k", Conv2d(ch, ch, 1));
  v = register_module("v", Conv2d(ch, ch, 1));
  proj_out = register_module("proj_out", Conv2d(ch, ch, 1));
}

at::Tensor VaeAttentionImpl::forward(const at::Tensor& x) {
  auto h = norm(x);
  auto o = attention(to_sequence(q(h)), to_sequence(k(h)), to_sequence(v(h)), 1);
  return x + proj_out(to_image(o, x.sizes()));
}

VaeMidImpl::VaeMidImpl(int64_t ch, int64_t groups) {
  block_1 = register_module("block_1", VaeResBlock(ch, ch, groups));
  attn_1 = register_module("attn_1", VaeAttention(ch, groups));
  block_2 = register_module("block_2", VaeResBlock(ch, ch, groups));
}

at::Tensor VaeMidImpl::forward(const at::Tensor& x) { return block_2(attn_1(block_1(x))); }

VaeLevelImpl::VaeLevelImpl(int64_t in, int64_t out, int64_t blocks, int64_t groups, const char* resample_kind) {
  block = register_module("block", nn::ModuleList());
  for (int64_t j = 0; j < blocks; ++j) block->push_back(VaeResBlock(j == 0 ? in : out, out, groups));
  if (resample_kind) {
    down = std::string(resample_kind) == "downsample";
    auto m = nn::Sequential();
    resample = Conv2d(out, out, 3, down ? 2 : 1, down ? 0 : 1);
    m->push_back("conv", resample);
    register_module(resample_kind, m);
  }
}

at::Tensor VaeLevelImpl::forward(at::Tensor x) {
  for (const auto& b : *block) x = b->as<VaeResBlock>()->forward(x);
  if (!resample) return x;
  if (down) return resample(at::constant_pad_nd(x, {0, 1, 0, 1}));  // the original asymmetric padding
  return resample(at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}));
}

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& c) {
  const int64_t levels = c.mult.size(), top = c.ch * c.mult.back();
  conv_in = register_module("conv_in", Conv2d(3, c.ch, 3, 1, 1));
  down = register_module("down", nn::ModuleList());
  for (int64_t i = 0; i < levels; ++i) {
    int64_t in = c.ch * (i == 0 ? 1 : c.mult[i - 1]), out = c.ch * c.mult[i];
    down->push_back(VaeLevel(in, out, c.res_blocks, c.groups, i + 1 < levels ? "downsample" : nullptr));
  }
  mid = register_module("mid", VaeMid(top, c.groups));
  norm_out = register_module("norm_out", GroupNorm(c.groups, top, kEps));
  conv_out = register_module("conv_out", Conv2d(top, 2 * c.z, 3, 1, 1));
}

at::Tensor VaeEncoderImpl::forward(const at::Tensor& image) {
  auto x = conv_in(image);
  for (const auto& level : *down) x = level->as<VaeLevel>()->forward(x);
  return conv_out(silu_fresh(norm_out(mid(x))));
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& c) {
  const int64_t levels = c.mult.size(), top = c.ch * c.mult.back();
  conv_in = register_module("conv_in", Conv2d(c.z, top, 3, 1, 1));
  mid = register_module("mid", VaeMid(top, c.groups));
  up = register_module("up", nn::ModuleList());
  for (int64_t i = 0; i < levels; ++i) {
    int64_t in = c.ch * (i + 1 < levels ? c.mult[i + 1] : c.mult[i]), out = c.ch * c.mult[i];
    up->push_back(VaeLevel(in, out, c.res_blocks + 1, c.groups, i > 0 ? "upsample" : nullptr));
  }
  norm_out = register_module("norm_out", GroupNorm(c.groups, c.ch * c.mult[0], kEps));
  conv_out = register_module("conv_out", Conv2d(c.ch * c.mult[0], 3, 3, 1, 1));
}

at::Tensor VaeDecoderImpl::forward(const at::Tensor& z) {
  auto x = mid(conv_in(z));
  for (size_t i = up->size(); i-- > 0;) x = up[i]->as<VaeLevel>()->forward(x);
  return conv_out(silu_fresh(norm_out(x)));
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& c) : scale(int64_t(1) << (c.mult.size() - 1)) {
  encoder = register_module("encoder", VaeEncoder(c));
  decoder = register_module("decoder", VaeDecoder(c));
  quant_conv = register_module("quant_conv", Conv2d(2 * c.z, 2 * c.z, 1));
  post_quant_conv = register_module("post_quant_conv", Conv2d(c.z, c.z, 1));
}

void AutoencoderKLImpl::set_winograd(WinogradRule rule) {
  sdtorch::set_winograd(*this, {});
  const size_t deepest = decoder->up->size() - 1;
  for (size_t i = 0; i < deepest; ++i) {
    sdtorch::set_winograd(*decoder->up[i], rule);
    sdtorch::set_winograd(*encoder->down[i], rule);
  }
  // The deepest decoder level's upsample conv runs at the next level's size.
  if (auto up = decoder->up[deepest]->as<VaeLevel>()->resample) sdtorch::set_winograd(*up, rule);
}

at::Tensor AutoencoderKLImpl::encode(const at::Tensor& image, int64_t tile) {
  auto moments_of = [this](const at::Tensor& x) { return quant_conv(encoder(x.contiguous(at::MemoryFormat::ChannelsLast))); };
  bool split = tile > 0 && (image.size(2) > tile || image.size(3) > tile);
  auto moments = (split ? tiled(moments_of, image, tile, 1.0 / double(scale)) : moments_of(image)).contiguous().chunk(2, 1);
  return at::cat({moments[0], moments[1].clamp(-30.0, 20.0)}, 1);
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& z, int64_t tile) {
  auto decode_of = [this](const at::Tensor& x) { return decoder(post_quant_conv(x.contiguous(at::MemoryFormat::ChannelsLast))); };
  bool split = tile > 0 && (z.size(2) > tile || z.size(3) > tile);
  return (split ? tiled(decode_of, z, tile, double(scale)) : decode_of(z)).contiguous();
}

}  // namespace sdtorch
