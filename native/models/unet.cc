#include "models/unet.h"

#include <cmath>

namespace sdtorch {

namespace {
constexpr double kNormEps = 1e-5, kTransformerNormEps = 1e-6;
}

ConvLayer::ConvLayer(int64_t in, int64_t out) {
  weight = register_parameter("weight", torch::empty({out, in, 3, 3}));
  bias = register_parameter("bias", torch::empty({out}));
}

at::Tensor ConvLayer::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, at::IntArrayRef) {
  return conv2d(x, weight, bias, 1, 1);  // prepacked, it starts the channels-last residual stream
}

ResBlock::ResBlock(int64_t in, int64_t out, int64_t emb_dim, int64_t groups) {
  in_layers = register_module("in_layers", nn::Sequential(GroupNorm(groups, in, kNormEps), nn::SiLU(), Conv2d(in, out, 3, 1, 1)));
  emb_layers = register_module("emb_layers", nn::Sequential(nn::SiLU(), Linear(emb_dim, out)));
  out_layers = register_module("out_layers", nn::Sequential(GroupNorm(groups, out, kNormEps), nn::SiLU(), nn::Dropout(0.0),
                                                            Conv2d(out, out, 3, 1, 1)));
  if (in != out) skip_connection = register_module("skip_connection", Conv2d(in, out, 1));
}

at::Tensor ResBlock::forward(const at::Tensor& x, const at::Tensor& emb, const at::Tensor&, at::IntArrayRef) {
  auto h = in_layers->forward(x) + emb_layers->forward(emb).unsqueeze(-1).unsqueeze(-1);
  h = out_layers->forward(h);
  return (skip_connection ? skip_connection(x) : x) + h;
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t context_dim, int64_t heads) {
  attn1 = register_module("attn1", CrossAttention(dim, dim, heads));
  ff = register_module("ff", FeedForward(dim));
  attn2 = register_module("attn2", CrossAttention(dim, context_dim, heads));
  norm1 = register_module("norm1", LayerNorm(dim, kNormEps));
  norm2 = register_module("norm2", LayerNorm(dim, kNormEps));
  norm3 = register_module("norm3", LayerNorm(dim, kNormEps));
}

at::Tensor BasicTransformerBlockImpl::forward(at::Tensor x, const at::Tensor& context) {
  auto h = norm1(x);
  x = x + attn1(h, h);
  x = x + attn2(norm2(x), context);
  return x + ff(norm3(x));
}

SpatialTransformer::SpatialTransformer(int64_t ch, int64_t context_dim, int64_t heads, int64_t groups, bool linear, int64_t depth) {
  norm = register_module("norm", GroupNorm(groups, ch, kTransformerNormEps));
  if (linear) proj_in_linear = register_module("proj_in", Linear(ch, ch));
  else proj_in = register_module("proj_in", Conv2d(ch, ch, 1));
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i) transformer_blocks->push_back(BasicTransformerBlock(ch, context_dim, heads));
  if (linear) proj_out_linear = register_module("proj_out", Linear(ch, ch));
  else proj_out = register_module("proj_out", Conv2d(ch, ch, 1));
}

at::Tensor SpatialTransformer::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor& context, at::IntArrayRef) {
  // [B, C, h, w] -> tokens [B, h·w, C]; the projections act before (conv) or after (linear) the reshape.
  auto h = proj_in_linear ? proj_in_linear(to_sequence(norm(x))) : to_sequence(proj_in(norm(x)));
  for (const auto& block : *transformer_blocks) h = block->as<BasicTransformerBlock>()->forward(h, context);
  return x + (proj_out_linear ? to_image(proj_out_linear(h), x.sizes()) : proj_out(to_image(h, x.sizes())));
}

Downsample::Downsample(int64_t ch) { op = register_module("op", Conv2d(ch, ch, 3, 2, 1)); }

at::Tensor Downsample::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, at::IntArrayRef) { return op(x); }

Upsample::Upsample(int64_t ch) { conv = register_module("conv", sdtorch::Conv2d(ch, ch, 3, 1, 1)); }

at::Tensor Upsample::forward(const at::Tensor& x, const at::Tensor&, const at::Tensor&, at::IntArrayRef skip_size) {
  std::vector<int64_t> size = skip_size.empty() ? std::vector<int64_t>{x.size(2) * 2, x.size(3) * 2} : skip_size.vec();
  return conv(at::upsample_nearest2d(x, size));
}

void UNetBlockImpl::add(std::shared_ptr<UNetLayer> layer) {
  register_module(std::to_string(layers.size()), layer);
  layers.push_back(std::move(layer));
}

at::Tensor UNetBlockImpl::forward(at::Tensor x, const at::Tensor& emb, const at::Tensor& context, at::IntArrayRef skip_size) {
  for (const auto& layer : layers) x = layer->forward(x, emb, context, skip_size);
  return x;
}

UNetModelImpl::UNetModelImpl(const UNetConfig& c) : config(c) {
  const int64_t emb_dim = c.time_dim * 4, levels = c.mult.size();
  time_embed = register_module("time_embed", nn::Sequential(Linear(c.time_dim, emb_dim), nn::SiLU(), Linear(emb_dim, emb_dim)));
  if (c.adm_in > 0) {
    // label_emb.0.{0,2}: sgm's Sequential(Sequential(Linear, SiLU, Linear)).
    label_emb = register_module("label_emb", nn::ModuleList(nn::Sequential(Linear(c.adm_in, emb_dim), nn::SiLU(), Linear(emb_dim, emb_dim))));
  }
  auto inputs = register_module("input_blocks", nn::ModuleList());
  auto block = [](std::initializer_list<std::shared_ptr<UNetLayer>> layers) {
    UNetBlock b;
    for (auto& l : layers) b->add(l);
    return b;
  };
  auto attn = [&](int64_t ch, int64_t depth) {
    return std::make_shared<SpatialTransformer>(ch, c.context, c.heads_at(ch), c.groups, c.linear_proj, depth);
  };

  // Down path; `skips` records the channels of each skip connection, in push order.
  std::vector<int64_t> skips{c.ch};
  input_blocks.push_back(block({std::make_shared<ConvLayer>(c.in, c.ch)}));
  int64_t ch = c.ch;
  for (int64_t level = 0; level < levels; ++level) {
    for (int64_t r = 0; r < c.res_blocks; ++r) {
      int64_t out = c.ch * c.mult[level];
      auto b = block({std::make_shared<ResBlock>(ch, out, emb_dim, c.groups)});
      if (c.depth[level] > 0) b->add(attn(out, c.depth[level]));
      input_blocks.push_back(b);
      ch = out;
      skips.push_back(ch);
    }
    if (level + 1 < levels) {
      input_blocks.push_back(block({std::make_shared<Downsample>(ch)}));
      skips.push_back(ch);
    }
  }
  for (auto& b : input_blocks) inputs->push_back(b);

  middle_block = register_module("middle_block", block({std::make_shared<ResBlock>(ch, ch, emb_dim, c.groups), attn(ch, c.middle_depth),
                                                         std::make_shared<ResBlock>(ch, ch, emb_dim, c.groups)}));

  // Up path: res_blocks + 1 blocks per level, each eating one skip connection.
  auto outputs = register_module("output_blocks", nn::ModuleList());
  for (int64_t level = levels; level-- > 0;) {
    for (int64_t r = 0; r <= c.res_blocks; ++r) {
      int64_t out = c.ch * c.mult[level];
      auto b = block({std::make_shared<ResBlock>(ch + skips.back(), out, emb_dim, c.groups)});
      skips.pop_back();
      ch = out;
      if (c.depth[level] > 0) b->add(attn(ch, c.depth[level]));
      if (level > 0 && r == c.res_blocks) b->add(std::make_shared<Upsample>(ch));
      output_blocks.push_back(b);
    }
  }
  for (auto& b : output_blocks) outputs->push_back(b);

  out = register_module("out", nn::Sequential(GroupNorm(c.groups, ch, kNormEps), nn::SiLU(), Conv2d(ch, c.out, 3, 1, 1)));
}

at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  auto exponent = at::arange(0, half, t.options().dtype(at::kFloat)) * (-std::log(10000.0)) / double(half);
  auto args = t.to(at::kFloat).unsqueeze(1) * exponent.exp().unsqueeze(0);
  return at::cat({args.cos(), args.sin()}, -1);
}

at::Tensor UNetModelImpl::forward(const at::Tensor& x, const at::Tensor& t, const Conditioning& cond) {
  const at::Tensor& context = cond.context;
  auto emb = time_embed->forward(timestep_embedding(t, config.time_dim).to(x.scalar_type()));
  if (label_emb) {
    // y = [text_embeds, emb(time_ids[:, 0]), emb(time_ids[:, 1]), ...], each number its own sinusoid.
    const int64_t b = cond.time_ids.size(0);
    auto ids = timestep_embedding(cond.time_ids.flatten(), config.time_id_dim).reshape({b, -1});
    auto y = at::cat({cond.text_embeds, ids.to(cond.text_embeds.scalar_type())}, 1);
    emb = emb + (*label_emb)[0]->as<nn::SequentialImpl>()->forward(y);
  }
  std::vector<at::Tensor> hs;
  at::Tensor h = cond.concat.defined() ? at::cat({x, cond.concat}, 1) : x;
  for (auto& b : input_blocks) {
    h = b->forward(h, emb, context);
    hs.push_back(h);
  }
  h = middle_block->forward(h, emb, context);
  for (auto& b : output_blocks) {
    h = at::cat({h, hs.back()}, 1);
    hs.pop_back();
    h = b->forward(h, emb, context, hs.empty() ? at::IntArrayRef{} : hs.back().sizes().slice(2));
  }
  // Prepacked convs work channels-last; the samplers' arithmetic gets the usual layout.
  return out->forward(h).contiguous();
}

}  // namespace sdtorch
