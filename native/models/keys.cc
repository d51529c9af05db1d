#include "models/keys.h"

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

std::string canonical_key(const std::string& key) {
  for (const auto& r : key_rules())
    if (key.rfind(r.from, 0) == 0) return r.to + key.substr(std::char_traits<char>::length(r.from));
  return key;
}

TensorFile with_canonical_keys(const TensorFile& file, const std::string& path) {
  TensorFile out;
  out.metadata = file.metadata;
  out.format = file.format;
  out.tensors.reserve(file.tensors.size());
  std::unordered_map<std::string, const std::string*> from;  // canonical name -> file key
  from.reserve(file.tensors.size());
  for (const auto& [k, t] : file.tensors) {
    std::string name = canonical_key(k);
    auto [it, fresh] = from.emplace(name, &k);
    if (!fresh)
      throw std::runtime_error("'" + path + "' holds both '" + *it->second + "' and '" + k + "', the same weight '" + name +
                               "' in two key layouts; keep one of them (re-save the file without the other)");
    out.tensors.emplace_back(std::move(name), t);
  }
  return out;
}

}  // namespace sdtorch
