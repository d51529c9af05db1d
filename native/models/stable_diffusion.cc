#include "models/stable_diffusion.h"

#include <stdexcept>
#include <unordered_map>

#include "models/keys.h"
#include "models/sources.h"

namespace sdtorch {

namespace {

// Copies (or, for matching CPU dtypes, aliases) each parameter from the file. `originals`, when
// given, keeps the file's tensors (for LoRAs); the pages of those that were converted are handed
// back, so keeping them costs no resident memory until a LoRA reads them.
void load_component(nn::Module& module, const std::unordered_map<std::string, at::Tensor>& tensors,
                    const std::string& prefix, const std::string& path, const Family& family, at::Device device,
                    at::ScalarType dtype, bool channels_last = false,
                    std::unordered_map<std::string, at::Tensor>* originals = nullptr) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const std::string key = prefix + p.key();
    auto it = tensors.find(key);
    if (it == tensors.end())
      throw std::runtime_error("'" + path + "' is missing tensor '" + key + "' of an " + family.label + " checkpoint; the file is " +
                               "incomplete or a different model");
    at::Tensor src = it->second;
    at::Tensor& dst = p.value();
    if (src.sizes() != dst.sizes()) {
      // Some converters store the VAE attention 1x1 convs as linear weights [C, C].
      if (src.numel() == dst.numel() && src.dim() == 2 && dst.dim() == 4) src = src.reshape(dst.sizes());
      else
        throw std::runtime_error("'" + path + "': tensor '" + key + "' has shape " + shape_str(src.sizes()) +
                                 ", expected " + shape_str(dst.sizes()) + " for an " + family.label + " checkpoint");
    }
    if (!src.is_floating_point())
      throw std::runtime_error("'" + path + "': tensor '" + key + "' is not floating point");
    // channels_last: conv weights in oneDNN's preferred layout (a copy of them); otherwise the
    // parameter aliases the memory-mapped file when nothing else changes.
    if (channels_last && dst.dim() == 4) dst.set_data(src.to(device, dtype).contiguous(at::MemoryFormat::ChannelsLast));
    else dst.set_data(src.scalar_type() == dtype && device.is_cpu() ? src : src.to(device, dtype).contiguous());
    if (originals) {
      originals->emplace(key, src);
      if (dst.data_ptr() != src.data_ptr()) release_pages(src);
    }
  }
}

// Whether every conv and linear weight of `module` is the file's tensor itself (no conversion copied it).
bool weights_alias_file(nn::Module& module, const std::unordered_map<std::string, at::Tensor>& tensors, const std::string& prefix) {
  for (const auto& p : module.named_parameters()) {
    if (p.value().dim() < 2) continue;
    auto it = tensors.find(prefix + p.key());
    if (it == tensors.end() || it->second.data_ptr() != p.value().data_ptr()) return false;
  }
  return true;
}

}  // namespace

void release_text_pages(StableDiffusion& sd) {
  if (!sd.text_pages_resident) return;
  sd.text_pages_resident = false;
  for (auto& te : sd.text_encoders)
    for (const auto& p : te->named_parameters()) {
      auto it = sd.originals.find(te->config.prefix + p.key());
      if (it != sd.originals.end() && it->second.data_ptr() == p.value().data_ptr()) release_pages(it->second);
    }
}

std::shared_ptr<StableDiffusion> load_stable_diffusion(const LoadRequest& request) {
  const std::string& path = request.path;
  const at::Device device = request.device;
  const at::ScalarType dtype = request.dtype;
  // Other key layouts of the same weights load under the names below (models/keys.h, sources.h).
  TensorFile file = with_canonical_keys(read_model(path), path);
  auto sd = std::make_shared<StableDiffusion>();
  sd->family = detect_family(file, path, request.prediction);
  for (const auto& c : sd->family.text_encoders) sd->text_encoders.push_back(ClipTextModel(c));
  sd->vae = AutoencoderKL(sd->family.vae);
  sd->unet = UNetModel(sd->family.unet);
  if (!request.vae.empty()) {
    replace_vae(file, request.vae, sd->family, *sd->vae);
    sd->vae_path = request.vae;
  }

  std::unordered_map<std::string, at::Tensor> tensors;
  tensors.reserve(file.tensors.size());
  for (const auto& [k, t] : file.tensors) tensors.emplace(k, t);
  for (auto& te : sd->text_encoders)
    load_component(*te, tensors, te->config.prefix, path, sd->family, device, dtype, false, &sd->originals);
  // fp32 on CPU: convs and linears on weights prepacked for oneDNN at their first call (layers.h),
  // channels-last activations. Otherwise the VAE's conv weights are copied channels-last (its convs
  // over 512x512 activations gain ~25% that way, for 320 MB). The UNet's copies replace pages of the
  // mapped file handed back when its weights are the file's own bytes; from converted weights (an
  // fp16 file) they come on top (3.4 GB for SD 1.x), so "auto" packs those only when asked.
  const bool cpu32 = device.is_cpu() && dtype == at::kFloat;
  const bool vae_prepack = cpu32 && request.prepack != "off";
  load_component(*sd->vae, tensors, kVaePrefix, path, sd->family, device, dtype, /*channels_last=*/!vae_prepack);
  load_component(*sd->unet, tensors, kUNetPrefix, path, sd->family, device, dtype, false, &sd->originals);
  set_prepack(*sd->unet, cpu32 && (request.prepack == "on" || (request.prepack == "auto" && weights_alias_file(*sd->unet, tensors, kUNetPrefix))));
  set_prepack(*sd->vae, vae_prepack);
  // Winograd's transformed weights take 4x the weights' memory; "auto" spends it where a conv runs
  // over large activations for its weight (layers.h): the UNet's 320- and 640-channel levels (+0.54 GB
  // for SD 1.x; the rest would add 5.8 GB), the VAE's 256- and 512-channel convs above
  // its deepest level (+0.28 GB while it decodes).
  const bool all = request.winograd == "on";
  const WinogradRule rule = all ? WinogradRule{16, INT64_MAX} : request.winograd == "auto" ? WinogradRule{256, 15 << 20} : WinogradRule{};
  set_winograd(*sd->unet, rule);
  if (all) set_winograd(*sd->vae, rule);  // every level, not only those above the deepest
  else sd->vae->set_winograd(rule);
  for (auto& te : sd->text_encoders) te->eval();
  sd->vae->eval();
  sd->unet->eval();
  return sd;
}

}  // namespace sdtorch
