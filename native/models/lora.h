// LoRA and LyCORIS networks (LoRA/LoCon, LoHa, LoKr) merged into a loaded model's weights.
//
// A LoRA changes weights, not code: each layer it names becomes W0 + Σ multiplier · scale · ΔW, computed
// in fp32 from the checkpoint's own tensor W0 (kept by load_stable_diffusion) and cast to the
// parameter's dtype. Removing a LoRA therefore gives back the base weights bit for bit, and switching
// from one set to another recomputes from W0 instead of accumulating rounding.
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "models/family.h"

namespace sdtorch {

struct StableDiffusion;

struct LoraRequest {
  std::string name;  // for reports
  std::string path;  // .safetensors, or .pt/.ckpt/.bin (PyTorch zip, through the restricted unpickler)
  double multiplier = 1.0;
};

struct LoraReport {
  std::string name;
  int64_t modules = 0;                 // layers of the model it changes
  std::vector<std::string> unmatched;  // its modules (or stray tensors) that name no layer of the model
};

// The text encoder's and UNet's parameters after set_loras: how many there are, how many hold a LoRA
// sum, and how many use the checkpoint file's memory in place.
struct WeightCounts {
  int64_t total = 0, patched = 0, mapped = 0;
};

// The LoRA set merged into a model now.
struct LoraSet {
  std::string signature;            // files (path, size, mtime) and multipliers: asking again is free
  std::vector<LoraReport> reports;  // of that request
  std::set<std::string> patched;    // file keys of the parameters that hold a sum
};

// Makes `loras` the model's LoRA set (an empty list restores the base weights). Every file is read and
// checked before any weight changes: one that fits no layer of the model, or was made for another
// model family, is an error naming the file and what it looks like.
std::vector<LoraReport> set_loras(StableDiffusion& sd, const std::vector<LoraRequest>& loras, WeightCounts* counts = nullptr);

}  // namespace sdtorch
