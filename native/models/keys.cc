#include "models/keys.h"

#include <regex>
#include <stdexcept>
#include <unordered_map>

namespace sdtorch {

const std::vector<KeyRule>& key_rules() {
  // Older CLIP layout (transformers < 4.x saved CLIPTextModel without `text_model.`), found in early
  // SD 1.x fine-tunes; A1111 maps it the same way (modules/sd_models.py, checkpoint_dict_replacements).
  static const std::vector<KeyRule> rules = {
      {"cond_stage_model.transformer.embeddings.", "cond_stage_model.transformer.text_model.embeddings."},
      {"cond_stage_model.transformer.encoder.", "cond_stage_model.transformer.text_model.encoder."},
      {"cond_stage_model.transformer.final_layer_norm.", "cond_stage_model.transformer.text_model.final_layer_norm."},
  };
  return rules;
}

namespace {

// An OpenCLIP text tower's key: `cond_stage_model.model.*` (SD 2.x) or `conditioner.embedders.N.model.*`
// (SDXL) -> the prefix its transformers-named twin loads under (`...transformer.`) and the key's rest.
bool open_clip_key(const std::string& key, std::string* prefix, std::string* rest) {
  static const std::regex pattern(R"(^(cond_stage_model\.|conditioner\.embedders\.\d+\.)model\.(.*)$)");
  std::smatch m;
  if (!std::regex_match(key, m, pattern)) return false;
  *prefix = m[1].str() + "transformer.";
  *rest = m[2].str();
  return true;
}

// OpenCLIP's text towers (SD 2.x's ViT-H, SDXL's bigG) under transformers' CLIP names, as diffusers' convert_open_clip_checkpoint
// maps it: resblocks.N -> encoder.layers.N, ln_1/ln_2 -> layer_norm1/2, mlp.c_fc/c_proj -> mlp.fc1/fc2,
// attn.out_proj -> self_attn.out_proj. The fused attn.in_proj_{weight,bias} [3W(, W)] are split in
// with_canonical_keys. Empty when `rest` (the key after the prefix) is not one of these.
std::string open_clip_name(const std::string& rest) {
  static const std::vector<KeyRule> top = {{"token_embedding.weight", "embeddings.token_embedding.weight"},
                                           {"positional_embedding", "embeddings.position_embedding.weight"},
                                           {"ln_final.", "final_layer_norm."}};
  static const std::vector<KeyRule> layer = {{"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."}, {"mlp.c_fc.", "mlp.fc1."},
                                             {"mlp.c_proj.", "mlp.fc2."}, {"attn.out_proj.", "self_attn.out_proj."}};
  for (const auto& r : top)
    if (rest.rfind(r.from, 0) == 0) return r.to + rest.substr(std::char_traits<char>::length(r.from));
  const std::string blocks = "transformer.resblocks.";
  if (rest.rfind(blocks, 0) != 0) return "";
  const size_t dot = rest.find('.', blocks.size());
  if (dot == std::string::npos) return "";
  const std::string n = rest.substr(blocks.size(), dot - blocks.size()), tail = rest.substr(dot + 1);
  for (const auto& r : layer)
    if (tail.rfind(r.from, 0) == 0) return "encoder.layers." + n + "." + r.to + tail.substr(std::char_traits<char>::length(r.from));
  if (tail == "attn.in_proj_weight" || tail == "attn.in_proj_bias") return "encoder.layers." + n + ".self_attn.in_proj";
  return "";
}

}  // namespace

std::string canonical_key(const std::string& key) {
  for (const auto& r : key_rules())
    if (key.rfind(r.from, 0) == 0) return r.to + key.substr(std::char_traits<char>::length(r.from));
  std::string prefix, rest;
  if (open_clip_key(key, &prefix, &rest)) {
    // text_projection [W, P] (x @ P) is transformers' Linear weight [P, W]: with_canonical_keys transposes it.
    if (rest == "text_projection") return prefix + "text_projection.weight";
    std::string name = open_clip_name(rest);
    // The fused projection keeps its own name until with_canonical_keys splits it.
    if (!name.empty() && name.find(".in_proj") == std::string::npos) return prefix + "text_model." + name;
  }
  return key;
}

TensorFile with_canonical_keys(const TensorFile& file, const std::string& path) {
  TensorFile out;
  out.metadata = file.metadata;
  out.format = file.format;
  out.tensors.reserve(file.tensors.size());
  std::unordered_map<std::string, const std::string*> from;  // canonical name -> file key
  from.reserve(file.tensors.size());
  auto add = [&](const std::string& k, std::string name, const at::Tensor& t) {
    auto [it, fresh] = from.emplace(name, &k);
    if (!fresh)
      throw std::runtime_error("'" + path + "' holds both '" + *it->second + "' and '" + k + "', the same weight '" + name +
                               "' in two key layouts; keep one of them (re-save the file without the other)");
    out.tensors.emplace_back(std::move(name), t);
  };
  for (const auto& [k, t] : file.tensors) {
    std::string prefix, rest;
    if (open_clip_key(k, &prefix, &rest)) {
      if (rest == "text_projection" && t.dim() == 2) {
        add(k, prefix + "text_projection.weight", t.t());  // a transposed view, no copy
        continue;
      }
      const std::string name = open_clip_name(rest);
      if (name.size() > 8 && name.compare(name.size() - 8, 8, ".in_proj") == 0) {
        // [3W, W] / [3W] = q; k; v along dim 0: three views of the file's tensor, no copy.
        if (t.dim() == 0 || t.size(0) % 3)
          throw std::runtime_error("'" + path + "': tensor '" + k + "' should stack q, k and v (3 x width rows)");
        const char* suffix = k.compare(k.size() - 6, 6, "weight") == 0 ? ".weight" : ".bias";
        const int64_t w = t.size(0) / 3;
        const std::string base = prefix + "text_model." + name.substr(0, name.size() - 7);  // "...self_attn."
        for (int i = 0; i < 3; ++i) add(k, base + "qkv"[i] + "_proj" + suffix, t.narrow(0, i * w, w));
        continue;
      }
    }
    add(k, canonical_key(k), t);
  }
  return out;
}

}  // namespace sdtorch
