#include "models/family.h"

#include <map>
#include <stdexcept>

#include "models/clip.h"
#include "models/keys.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sdtorch {
namespace {

Family sd1() {
  Family f;
  f.name = "sd15";
  f.label = "SD 1.x";
  return f;
}

Family tiny() {
  Family f = sd1();
  f.name = "tiny";
  f.label = "tiny test model (SD 1.x structure)";
  f.clip = {49408, 77, 32, 2, 2, 64};
  f.vae.ch = 32;
  f.vae.mult = {1, 2};
  f.unet.ch = 32;
  f.unet.context = 32;
  f.unet.time_dim = 32;
  f.unet.mult = {1, 2};
  f.unet.attention = {true, true};
  return f;
}

// Lookups by the names loading uses (models/keys.h), so detection and loading see one file.
bool has_prefix(const TensorFile& f, const std::string& prefix) {
  for (const auto& [k, t] : f.tensors)
    if (canonical_key(k).rfind(prefix, 0) == 0) return true;
  return false;
}

const at::Tensor* find(const TensorFile& f, const std::string& key) {
  for (const auto& [k, t] : f.tensors)
    if (canonical_key(k) == key) return &t;
  return nullptr;
}

}  // namespace

const std::vector<Family>& families() {
  static const std::vector<Family> table = {sd1(), tiny()};
  return table;
}

const Family& family(const std::string& name) {
  for (const auto& f : families())
    if (f.name == name) return f;
  std::string names;
  for (const auto& f : families()) names += (names.empty() ? "" : ", ") + f.name;
  throw std::invalid_argument("unknown preset '" + name + "'; use one of " + names);
}

std::string checkpoint_kind(const TensorFile& f) {
  if (const at::Tensor* conv_in = find(f, std::string(kUNetPrefix) + "input_blocks.0.0.weight")) {
    if (has_prefix(f, "conditioner.embedders.")) return "sdxl";
    if (has_prefix(f, "cond_stage_model.model.")) return "sd2";
    if (conv_in->dim() == 4 && conv_in->size(1) == 9) return "sd1-inpaint";
    return "sd1";
  }
  if (has_prefix(f, "conditioner.embedders.")) return "sdxl";
  for (const auto& [k, t] : f.tensors)
    if (k.find("lora_") != std::string::npos || k.find(".lora.") != std::string::npos || k.find("lora_A") != std::string::npos)
      return "lora";
  if (find(f, "encoder.conv_in.weight") || find(f, "decoder.conv_in.weight") || find(f, "first_stage_model.decoder.conv_in.weight"))
    return "vae";
  if (find(f, "input_blocks.0.0.weight") || find(f, "conv_in.weight")) return "unet";
  return "unknown";
}

const Family& detect_family(const TensorFile& file, const std::string& path) {
  const std::string kind = checkpoint_kind(file);
  const std::map<std::string, std::string> what = {
      {"sdxl", "an SDXL checkpoint"}, {"sd2", "an SD 2.x checkpoint (OpenCLIP text encoder)"},
      {"sd1-inpaint", "an SD 1.x inpainting checkpoint (9 input channels)"}, {"lora", "a LoRA"},
      {"vae", "a VAE alone"}, {"unet", "a UNet alone (diffusers layout)"}, {"unknown", "not a Stable Diffusion checkpoint"}};
  if (kind != "sd1")
    throw std::runtime_error("'" + path + "' looks like " + what.at(kind) +
                             "; sdtorch loads full SD 1.x single-file checkpoints (UNet, VAE and text encoder, "
                             "e.g. v1-5-pruned-emaonly.safetensors)");
  // SD 1.x and the tiny test preset share a structure; the UNet's width tells them apart.
  const int64_t width = find(file, std::string(kUNetPrefix) + "input_blocks.0.0.weight")->size(0);
  return family(width == family("tiny").unet.ch ? "tiny" : "sd15");
}

std::string component_of(const std::string& key) {
  if (key.rfind(kUNetPrefix, 0) == 0) return "unet";
  if (key.rfind(kVaePrefix, 0) == 0) return "vae";
  if (key.rfind("cond_stage_model.", 0) == 0) return "textEncoder";  // any text-encoder layout
  return "other";
}

std::vector<std::pair<std::string, std::vector<int64_t>>> preset_manifest(const std::string& preset) {
  const Family& c = family(preset);
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto add = [&](const nn::Module& m, const char* prefix) {
    for (const auto& p : m.named_parameters()) out.emplace_back(prefix + p.key(), p.value().sizes().vec());
  };
  add(*UNetModel(c.unet), kUNetPrefix);
  add(*AutoencoderKL(c.vae), kVaePrefix);
  add(*ClipTextModel(c.clip), kClipPrefix);
  return out;
}

}  // namespace sdtorch
