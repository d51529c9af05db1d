// Checkpoint key layouts that name the same weights differently, mapped to the names sdtorch loads
// by (family.h's prefixes). The one rule list: loading (stable_diffusion.cc) and detection
// (family.cc, which `sdtorch info` shows) both read file keys through it, so they agree.
#pragma once
#include <string>
#include <vector>

#include "io/tensor_file.h"

namespace sdtorch {

// A key starting with `from` starts with `to` instead.
struct KeyRule {
  const char* from;
  const char* to;
};

const std::vector<KeyRule>& key_rules();

// The name a file key loads by: the first rule whose `from` it starts with; OpenCLIP's text towers
// (`cond_stage_model.model.*` of SD 2.x, `conditioner.embedders.N.model.*` of SDXL) under
// transformers' CLIP names (`...transformer.text_model.*`, `...transformer.text_projection.weight`);
// else the key itself.
std::string canonical_key(const std::string& key);

// The file with every key canonical (the tensors are shared, not copied; OpenCLIP's fused
// attn.in_proj_{weight,bias} become q_proj/k_proj/v_proj views of it, text_projection a transposed view). `path` names the file in
// the error when two keys of the file map to one name (the same weight in both layouts).
TensorFile with_canonical_keys(const TensorFile& file, const std::string& path);

}  // namespace sdtorch
