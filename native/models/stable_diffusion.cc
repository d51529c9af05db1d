#include "models/stable_diffusion.h"

#include <stdexcept>
#include <unordered_map>

namespace sdtorch {

namespace {

constexpr const char* kUNet = "model.diffusion_model.";
constexpr const char* kVae = "first_stage_model.";
constexpr const char* kClip = "cond_stage_model.transformer.text_model.";

bool has_prefix(const TensorFile& f, const std::string& prefix) {
  for (const auto& [k, t] : f.tensors)
    if (k.rfind(prefix, 0) == 0) return true;
  return false;
}

const at::Tensor* find(const TensorFile& f, const std::string& key) {
  for (const auto& [k, t] : f.tensors)
    if (k == key) return &t;
  return nullptr;
}

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Copies (or, for matching CPU dtypes, aliases) each parameter from the file.
void load_component(nn::Module& module, const std::unordered_map<std::string, at::Tensor>& tensors,
                    const std::string& prefix, const std::string& path, at::Device device, at::ScalarType dtype,
                    bool channels_last = false) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const std::string key = prefix + p.key();
    auto it = tensors.find(key);
    if (it == tensors.end())
      throw std::runtime_error("'" + path + "' is missing tensor '" + key + "' of an SD 1.x checkpoint; the file is " +
                               "incomplete or a different model");
    at::Tensor src = it->second;
    at::Tensor& dst = p.value();
    if (src.sizes() != dst.sizes()) {
      // Some converters store the VAE attention 1x1 convs as linear weights [C, C].
      if (src.numel() == dst.numel() && src.dim() == 2 && dst.dim() == 4) src = src.reshape(dst.sizes());
      else
        throw std::runtime_error("'" + path + "': tensor '" + key + "' has shape " + shape_str(src.sizes()) +
                                 ", expected " + shape_str(dst.sizes()) + " for an SD 1.x checkpoint");
    }
    if (!src.is_floating_point())
      throw std::runtime_error("'" + path + "': tensor '" + key + "' is not floating point");
    // Zero copy when nothing changes: the parameter aliases the memory-mapped file.
    // channels_last: conv weights in oneDNN's preferred layout (a copy of them); otherwise the
    // parameter aliases the memory-mapped file when nothing else changes.
    if (channels_last && dst.dim() == 4) dst.set_data(src.to(device, dtype).contiguous(at::MemoryFormat::ChannelsLast));
    else dst.set_data(src.scalar_type() == dtype && device.is_cpu() ? src : src.to(device, dtype).contiguous());
  }
}

}  // namespace

std::string checkpoint_family(const TensorFile& f) {
  if (const at::Tensor* conv_in = find(f, std::string(kUNet) + "input_blocks.0.0.weight")) {
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

std::vector<std::pair<std::string, std::vector<int64_t>>> preset_manifest(const std::string& preset) {
  if (preset != "sd15" && preset != "tiny") throw std::invalid_argument("unknown preset '" + preset + "'; use sd15 or tiny");
  SDConfig c = preset == "tiny" ? tiny_config() : sd15_config();
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto add = [&](const nn::Module& m, const char* prefix) {
    for (const auto& p : m.named_parameters()) out.emplace_back(prefix + p.key(), p.value().sizes().vec());
  };
  add(*UNetModel(c.unet), kUNet);
  add(*AutoencoderKL(c.vae), kVae);
  add(*ClipTextModel(c.clip), kClip);
  return out;
}

std::shared_ptr<StableDiffusion> load_stable_diffusion(const TensorFile& file, const std::string& path, at::Device device,
                                                       at::ScalarType dtype) {
  const std::string family = checkpoint_family(file);
  const std::map<std::string, std::string> what = {
      {"sdxl", "an SDXL checkpoint"}, {"sd2", "an SD 2.x checkpoint (OpenCLIP text encoder)"},
      {"sd1-inpaint", "an SD 1.x inpainting checkpoint (9 input channels)"}, {"lora", "a LoRA"},
      {"vae", "a VAE alone"}, {"unet", "a UNet alone (diffusers layout)"}, {"unknown", "not a Stable Diffusion checkpoint"}};
  if (family != "sd1")
    throw std::runtime_error("'" + path + "' looks like " + what.at(family) +
                             "; sdtorch loads full SD 1.x single-file checkpoints (UNet, VAE and text encoder, "
                             "e.g. v1-5-pruned-emaonly.safetensors)");
  const int64_t width = find(file, std::string(kUNet) + "input_blocks.0.0.weight")->size(0);
  auto sd = std::make_shared<StableDiffusion>();
  sd->config = width == tiny_config().unet.ch ? tiny_config() : sd15_config();
  sd->clip = ClipTextModel(sd->config.clip);
  sd->vae = AutoencoderKL(sd->config.vae);
  sd->unet = UNetModel(sd->config.unet);

  std::unordered_map<std::string, at::Tensor> tensors;
  tensors.reserve(file.tensors.size());
  for (const auto& [k, t] : file.tensors) tensors.emplace(k, t);
  load_component(*sd->clip, tensors, kClip, path, device, dtype);
  // The VAE runs channels-last: its convs over 512x512 activations dominate and gain ~25% that
  // way, for 320 MB of copied weights. The UNet stays NCHW and zero-copy (channels-last there
  // gains ~4% for 2.5 GB more memory).
  load_component(*sd->vae, tensors, kVae, path, device, dtype, /*channels_last=*/true);
  load_component(*sd->unet, tensors, kUNet, path, device, dtype);
  for (nn::Module* m : std::initializer_list<nn::Module*>{sd->clip.get(), sd->vae.get(), sd->unet.get()}) m->eval();
  return sd;
}

}  // namespace sdtorch
