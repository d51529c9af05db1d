#include "models/taesd.h"

#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include "models/family.h"

namespace sdtorch {

namespace {

at::Tensor clamp_latents(const at::Tensor& x) { return at::tanh(x / 3) * 3; }
at::Tensor upsample(const at::Tensor& x) { return at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}); }

// A published key: "<index>.<rest>".
const std::regex& published_key() {
  static const std::regex pattern(R"(^(\d+)\.(.+)$)");
  return pattern;
}

// diffusers' AutoencoderTiny key: "(encoder|decoder).layers.<index>.<rest>".
const std::regex& diffusers_key() {
  static const std::regex pattern(R"(^(encoder|decoder)\.layers\.(\d+)\.(.+)$)");
  return pattern;
}

// The files' tensors under the names TaesdImpl's parameters have, and where each half came from.
struct Halves {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> file_of;  // "encoder" / "decoder" -> the file that gave it
  std::map<std::string, bool> diffusers;       // "encoder" / "decoder" -> in diffusers' names

  // What a parameter name is called in the file its half came from, for messages.
  std::string file_key(const std::string& name) const {
    const std::string half = name.substr(0, name.find('.'));
    const std::string rest = name.substr(half.size() + 1);
    if (!diffusers.at(half)) return rest;
    const size_t dot = rest.find('.');
    return half + ".layers." + std::to_string(std::stoll(rest.substr(0, dot)) - (half == "decoder" ? 1 : 0)) + rest.substr(dot);
  }
  std::string file(const std::string& name) const { return file_of.at(name.substr(0, name.find('.'))); }
};

[[noreturn]] void not_taesd(const std::string& path, const TensorFile& file) {
  const std::string kind = checkpoint_kind(file);
  throw std::runtime_error("taesd: '" + path + "' is not a TAESD file" +
                           (kind == "unknown" ? std::string(" (no tensor names of one)") : ": it looks like " + describe_kind(kind)) +
                           "; give taesd_decoder.safetensors (taesdxl_decoder for SDXL), optionally with its encoder, or a "
                           "diffusers AutoencoderTiny file");
}

// Adds one file to `out`: published halves (bare indices; the encoder's layer 0 is a conv, the
// decoder's the Clamp) or diffusers' AutoencoderTiny names (the decoder's indices one lower).
void add_file(Halves& out, const std::string& path) {
  TensorFile file = load_tensor_file(path);
  bool diffusers = false, published = !file.tensors.empty();
  for (const auto& [k, t] : file.tensors) {
    diffusers = diffusers || std::regex_match(k, diffusers_key());
    published = published && std::regex_match(k, published_key());
  }
  if (!diffusers && !published) not_taesd(path, file);
  bool encoder_file = false;
  for (const auto& [k, t] : file.tensors) encoder_file = encoder_file || k == "0.weight";
  std::set<std::string> halves;
  for (const auto& [k, t] : file.tensors) {
    std::smatch m;
    std::string name;
    if (diffusers) {
      if (!std::regex_match(k, m, diffusers_key()))
        throw std::runtime_error("taesd: '" + path + "': tensor '" + k + "' is no part of a TAESD (AutoencoderTiny)");
      const bool decoder = m[1] == "decoder";
      name = m[1].str() + "." + std::to_string(std::stoll(m[2].str()) + (decoder ? 1 : 0)) + "." + m[3].str();
      halves.insert(m[1].str());
    } else {
      const std::string half = encoder_file ? "encoder" : "decoder";
      name = half + "." + k;
      halves.insert(half);
    }
    out.tensors.emplace(name, t);
  }
  for (const auto& half : halves) {
    out.diffusers[half] = diffusers;
    auto [it, fresh] = out.file_of.emplace(half, path);
    if (!fresh)
      throw std::runtime_error("taesd: '" + it->second + "' and '" + path + "' both hold a TAESD " + half + "; give one " + half +
                               " (and at most one file of the other half)");
  }
}

// The structure the weights of `half` describe (see TaesdConfig), or nullopt when no file gave it.
// The walk follows the published Sequentials; load_taesd then checks every weight by name and shape.
std::optional<TaesdConfig> config_of(const Halves& h, const std::string& half) {
  auto it = h.file_of.find(half);
  if (it == h.file_of.end()) return std::nullopt;
  auto get = [&](int64_t i, const char* rest) -> const at::Tensor* {
    auto t = h.tensors.find(half + "." + std::to_string(i) + "." + rest);
    return t == h.tensors.end() ? nullptr : &t->second;
  };
  auto fail = [&](const std::string& why) -> std::runtime_error {
    return std::runtime_error("taesd: '" + it->second + "' is not a TAESD " + half + " of the published structure: " + why);
  };
  const bool encoder = half == "encoder";
  const at::Tensor* first = get(encoder ? 0 : 1, "weight");  // the decoder's layer 0 is the Clamp
  if (!first || first->dim() != 4) throw fail("its first layer is no convolution");
  TaesdConfig c;
  c.channels = first->size(0);
  if (!encoder) c.latent = first->size(1);
  c.blocks = {0};
  for (int64_t i = encoder ? 1 : 3;; ++i) {  // the decoder's layer 2 is a ReLU
    if (get(i, "conv.0.weight")) {
      ++c.blocks.back();
    } else if (const at::Tensor* conv = get(i, "weight"); conv && get(i, "bias")) {  // the last conv: to latents or RGB
      if (encoder) c.latent = conv->size(0);
      return c;
    } else if (encoder && conv) {  // a strided conv (no bias) starts the next level
      c.blocks.push_back(0);
    } else if (!encoder && !conv && get(i + 1, "weight") && !get(i + 1, "bias")) {  // Upsample, then conv (no bias)
      c.blocks.push_back(0);
      ++i;
    } else {
      throw fail("layer " + std::to_string(i) + " is neither a Block nor a convolution where one belongs");
    }
  }
}

}  // namespace

TaesdBlockImpl::TaesdBlockImpl(int64_t ch) {
  conv = register_module("conv", nn::Sequential(Conv2d(ch, ch, 3, 1, 1), nn::ReLU(), Conv2d(ch, ch, 3, 1, 1), nn::ReLU(),
                                                Conv2d(ch, ch, 3, 1, 1)));
}

at::Tensor TaesdBlockImpl::forward(const at::Tensor& x) { return at::relu(conv->forward(x) + x); }

TaesdImpl::TaesdImpl(const std::optional<TaesdConfig>& enc, const std::optional<TaesdConfig>& dec)
    : encoder_config(enc), decoder_config(dec) {
  if (enc) {
    const int64_t c = enc->channels;
    encoder = register_module("encoder", nn::Sequential());
    for (size_t level = 0; level < enc->blocks.size(); ++level) {
      encoder->push_back(level == 0 ? Conv2d(3, c, 3, 1, 1) : Conv2d(c, c, 3, 2, 1, /*bias=*/false));
      for (int64_t b = 0; b < enc->blocks[level]; ++b) encoder->push_back(TaesdBlock(c));
    }
    encoder->push_back(Conv2d(c, enc->latent, 3, 1, 1));
  }
  if (dec) {
    const int64_t c = dec->channels;
    decoder = register_module("decoder", nn::Sequential(nn::Functional(clamp_latents), Conv2d(dec->latent, c, 3, 1, 1), nn::ReLU()));
    for (size_t level = 0; level < dec->blocks.size(); ++level) {
      for (int64_t b = 0; b < dec->blocks[level]; ++b) decoder->push_back(TaesdBlock(c));
      if (level + 1 == dec->blocks.size()) break;
      decoder->push_back(nn::Functional(upsample));
      decoder->push_back(Conv2d(c, c, 3, 1, 1, /*bias=*/false));
    }
    decoder->push_back(Conv2d(c, 3, 3, 1, 1));
  }
}

at::Tensor TaesdImpl::encode(const at::Tensor& images) {
  if (!encoder) throw std::invalid_argument("this TAESD has no encoder: load taesd_encoder.safetensors with the decoder");
  // diffusers' EncoderTiny: [-1, 1] -> [0, 1], the range the published encoder was trained on.
  return encoder->forward(images.add(1).div(2).contiguous(at::MemoryFormat::ChannelsLast)).contiguous();
}

at::Tensor TaesdImpl::decode(const at::Tensor& latents) {
  if (!decoder) throw std::invalid_argument("this TAESD has no decoder: load taesd_decoder.safetensors with the encoder");
  // diffusers' DecoderTiny: the published decoder gives [0, 1]; x·2 − 1 is diffusers' range.
  return decoder->forward(latents.contiguous(at::MemoryFormat::ChannelsLast)).mul(2).sub(1).contiguous();
}

Taesd load_taesd(const std::vector<std::string>& paths, at::Device device, at::ScalarType dtype) {
  if (paths.empty()) throw std::invalid_argument("taesd: no file given");
  Halves h;
  for (const auto& path : paths) add_file(h, path);
  const auto enc = config_of(h, "encoder"), dec = config_of(h, "decoder");
  if (enc && dec && (enc->latent != dec->latent || enc->scale() != dec->scale()))
    throw std::runtime_error("taesd: the encoder '" + h.file_of.at("encoder") + "' and the decoder '" + h.file_of.at("decoder") +
                             "' belong to different TAESDs (their latent channels or scales differ)");
  Taesd taesd(enc, dec);
  torch::NoGradGuard no_grad;
  size_t used = 0;
  for (auto& p : taesd->named_parameters()) {
    const std::string where = "taesd: '" + h.file(p.key()) + "'", key = "'" + h.file_key(p.key()) + "'";
    auto it = h.tensors.find(p.key());
    if (it == h.tensors.end()) throw std::runtime_error(where + " is missing tensor " + key + " of a TAESD");
    if (it->second.sizes() != p.value().sizes())
      throw std::runtime_error(where + ": tensor " + key + " has shape " + shape_str(it->second.sizes()) + ", expected " +
                               shape_str(p.value().sizes()));
    if (!it->second.is_floating_point()) throw std::runtime_error(where + ": tensor " + key + " is not floating point");
    // Channels-last convolutions, as the VAE's: oneDNN's fast layout.
    p.value().set_data(it->second.to(device, dtype).contiguous(p.value().dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
    ++used;
  }
  if (used != h.tensors.size())
    for (const auto& [k, t] : h.tensors)
      if (!taesd->named_parameters().contains(k))
        throw std::runtime_error("taesd: '" + h.file(k) + "': tensor '" + h.file_key(k) + "' fits no layer of a TAESD");
  set_prepack(*taesd, device.is_cpu() && dtype == at::kFloat);  // as the VAE's (layers.h)
  taesd->eval();
  return taesd;
}

bool looks_like_taesd(const TensorFile& file) {
  bool block = false;
  for (const auto& [k, t] : file.tensors) {
    std::smatch m;
    if (!std::regex_match(k, m, diffusers_key()) && !std::regex_match(k, m, published_key())) return false;
    block = block || k.find(".conv.0.weight") != std::string::npos;
  }
  return block;
}

}  // namespace sdtorch
