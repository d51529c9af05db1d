#include "models/sources.h"

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "io/json.h"
#include "models/diffusers_names.h"

namespace sdtorch {
namespace {

bool starts(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

json::Value read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  try {
    return json::parse(text.data(), text.size());
  } catch (const std::exception& e) {
    throw std::runtime_error("'" + path + "' is not valid JSON: " + e.what());
  }
}

double number(const json::Value& v, const char* key, double fallback) {
  const json::Value* n = v.find(key);
  return n && n->kind == json::Value::Number ? n->number : fallback;
}

// The weights of one folder component, whichever of diffusers' and transformers' file names it was
// saved under (stems: "diffusion_pytorch_model"; "model", "pytorch_model"), fp16 variants and
// sharded checkpoints (*.index.json) included.
std::vector<std::string> component_files(const std::string& dir, std::initializer_list<const char*> stems) {
  for (const char* stem : stems)
    for (const char* ext : {".safetensors", ".fp16.safetensors", ".bin", ".fp16.bin"}) {
      const std::string file = dir + "/" + stem + ext;
      if (is_file(file)) return {file};
      // Sharded: the index names the shards.
      if (is_file(file + ".index.json")) {
        std::set<std::string> shards;
        const json::Value index = read_json(file + ".index.json");
        if (const json::Value* map = index.find("weight_map"))
          for (const auto& [name, shard] : map->members)
            if (shard.kind == json::Value::String && shard.str.find('/') == std::string::npos) shards.insert(dir + "/" + shard.str);
        if (shards.empty()) throw std::runtime_error("'" + file + ".index.json' names no shard files");
        return {shards.begin(), shards.end()};
      }
    }
  const char* stem = *stems.begin();
  throw std::runtime_error("'" + dir + "' has no " + stem + ".safetensors or " + stem + ".bin (the diffusers folder is incomplete)");
}

// Reads a component's tensors and adds them to `out` under the names `rename` gives (nullopt: a name
// that belongs to no module of ours, which is an error naming the file).
template <class Rename>
void add_component(TensorFile& out, const std::string& dir, std::initializer_list<const char*> stems, const Rename& rename) {
  for (const std::string& file : component_files(dir, stems)) {
    TensorFile part = load_tensor_file(file);
    for (auto& [k, t] : part.tensors) {
      std::optional<std::string> name = rename(k);
      if (!name) throw std::runtime_error("'" + file + "': tensor '" + k + "' fits no layer of a Stable Diffusion model of this configuration");
      if (!name->empty()) out.tensors.emplace_back(*name, t);
    }
  }
}

// unet/config.json -> the block structure the name rule needs.
UNetConfig unet_structure(const json::Value& cfg) {
  UNetConfig c;
  if (const json::Value* channels = cfg.find("block_out_channels")) {
    c.mult.clear();
    c.depth.clear();
    for (const auto& ch : channels->items) c.mult.push_back(int64_t(ch.number));
  }
  c.res_blocks = int64_t(number(cfg, "layers_per_block", 2));
  const json::Value* types = cfg.find("down_block_types");
  for (size_t i = 0; i < c.mult.size(); ++i)
    c.depth.push_back(types && i < types->items.size() ? starts(types->items[i].str, "CrossAttn") : i + 1 < c.mult.size());
  if (const json::Value* type = cfg.find("addition_embed_type"); type && type->kind == json::Value::String && type->str == "text_time")
    c.adm_in = int64_t(number(cfg, "projection_class_embeddings_input_dim", 1));
  return c;
}

TensorFile read_diffusers_folder(const std::string& dir) {
  if (!is_file(dir + "/model_index.json"))
    throw std::runtime_error("'" + dir + "' is a folder without model_index.json; give a checkpoint file (.safetensors, .ckpt) "
                             "or a diffusers folder (model_index.json, unet/, vae/, text_encoder/)");
  // model_index.json names the pipeline: SD 1.x/2.x and SDXL ones (txt2img, img2img, inpaint) load here.
  const json::Value index = read_json(dir + "/model_index.json");
  const json::Value* cls = index.find("_class_name");
  if (index.kind != json::Value::Object || !cls || cls->kind != json::Value::String)
    throw std::runtime_error("'" + dir + "/model_index.json' does not name a pipeline (_class_name); is this a diffusers folder?");
  if (!starts(cls->str, "StableDiffusion") || cls->str.find("3") != std::string::npos ||
      cls->str.find("Upscale") != std::string::npos || cls->str.find("Video") != std::string::npos)
    throw std::runtime_error("'" + dir + "' is a " + cls->str + " folder; sdtorch loads SD 1.x, SD 2.x and SDXL pipelines "
                             "(StableDiffusionPipeline, StableDiffusionXLPipeline and their img2img/inpaint variants)");
  // SDXL: text_encoder (CLIP ViT-L) and text_encoder_2 (bigG, with projection); the refiner has the second alone.
  const bool xl = cls->str.find("XL") != std::string::npos;
  const bool first = is_dir(dir + "/text_encoder"), second = xl && is_dir(dir + "/text_encoder_2");
  for (const char* part : {"unet", "vae"})
    if (!is_dir(dir + "/" + part))
      throw std::runtime_error("'" + dir + "' has no " + part + "/ folder: the diffusers folder is incomplete");
  if (!first && !second)
    throw std::runtime_error("'" + dir + "' has no text_encoder/ folder: the diffusers folder is incomplete");
  TensorFile out;
  out.format = "diffusers";
  const json::Value unet_cfg = read_json(dir + "/unet/config.json");
  const UNetConfig unet = unet_structure(unet_cfg);
  add_component(out, dir + "/unet", {"diffusion_pytorch_model"}, [&](const std::string& k) -> std::optional<std::string> {
    auto ldm = diffusers_unet_to_ldm(k, unet);
    return ldm ? std::optional<std::string>(kUNetPrefix + *ldm) : std::nullopt;
  });
  VaeConfig vae;
  if (is_file(dir + "/vae/config.json"))
    if (const json::Value* ch = read_json(dir + "/vae/config.json").find("block_out_channels")) vae.mult.assign(ch->items.size(), 1);
  add_component(out, dir + "/vae", {"diffusion_pytorch_model"}, [&](const std::string& k) -> std::optional<std::string> {
    auto ldm = diffusers_vae_to_ldm(k, vae);
    return std::string(kVaePrefix) + (ldm ? *ldm : k);  // conv_in, conv_out, (post_)quant_conv keep their names
  });
  // transformers' CLIPTextModel(WithProjection): "text_model.*" (or, saved by transformers 5, the same
  // names without it) and "text_projection.weight", under the LDM layout's encoder prefixes.
  auto text_encoder = [&](const std::string& folder, const std::string& prefix) {
    add_component(out, dir + "/" + folder, {"model", "pytorch_model"}, [&](const std::string& k) -> std::optional<std::string> {
      if (starts(k, "text_projection.")) return prefix + k;
      const std::string name = starts(k, "text_model.") ? k.substr(11) : k;
      if (starts(name, "embeddings.position_ids")) return std::string();  // a buffer, not a weight
      return prefix + "text_model." + name;
    });
  };
  if (!xl) text_encoder("text_encoder", "cond_stage_model.transformer.");
  if (xl && first) text_encoder("text_encoder", "conditioner.embedders.0.transformer.");
  if (second) text_encoder("text_encoder_2", first ? "conditioner.embedders.1.transformer." : "conditioner.embedders.0.transformer.");
  // What the folder says about itself.
  const std::string scheduler = dir + "/scheduler/scheduler_config.json";
  if (is_file(scheduler))
    if (const json::Value* p = read_json(scheduler).find("prediction_type"); p && p->kind == json::Value::String)
      out.metadata["sdtorch.prediction"] = p->str;
  if (const double size = number(unet_cfg, "sample_size", 0); size > 0)
    out.metadata["sdtorch.default_size"] = std::to_string(int64_t(size) << (vae.mult.size() - 1));
  return out;
}

}  // namespace

TensorFile read_model(const std::string& path) { return is_dir(path) ? read_diffusers_folder(path) : load_tensor_file(path); }

void replace_vae(TensorFile& model, const std::string& vae_path, const Family& family, const nn::Module& vae_module) {
  if (is_dir(vae_path)) throw std::runtime_error("vae: '" + vae_path + "' is a folder; give the VAE file itself (e.g. vae/diffusion_pytorch_model.safetensors)");
  TensorFile file;
  try {
    file = load_tensor_file(vae_path);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("vae: ") + e.what());
  }
  std::unordered_map<std::string, at::Tensor> vae;  // LDM name below first_stage_model. -> tensor
  for (auto& [k, t] : file.tensors) {
    std::string name = starts(k, kVaePrefix) ? k.substr(std::char_traits<char>::length(kVaePrefix)) : k;
    if (!(starts(name, "encoder.") || starts(name, "decoder.") || starts(name, "quant_conv.") || starts(name, "post_quant_conv.")))
      continue;  // a whole checkpoint given as VAE: its first stage only; EMA bookkeeping and the like
    if (auto ldm = diffusers_vae_to_ldm(name, family.vae)) name = *ldm;
    vae.emplace(name, t);
  }
  if (vae.empty())
    throw std::runtime_error("vae: '" + vae_path + "' holds no VAE weights (encoder.*, decoder.*, or first_stage_model.*): it looks like " +
                             describe_kind(checkpoint_kind(file)));
  // Latent channels first: the usual mistake (an SD3/FLUX VAE, 16 channels), said as such.
  if (auto it = vae.find("decoder.conv_in.weight"); it != vae.end() && it->second.dim() == 4 && it->second.size(1) != family.vae.z)
    throw std::runtime_error("vae: '" + vae_path + "' is not a VAE for " + family.label + ": its latents have " +
                             std::to_string(it->second.size(1)) + " channels, this model's have " + std::to_string(family.vae.z) +
                             " (SD3 and FLUX VAEs have 16); use a VAE made for " + family.label);
  // Every weight of this family's VAE, with its shape: a VAE of another family fails here, by name.
  for (const auto& p : vae_module.named_parameters()) {
    auto it = vae.find(p.key());
    if (it == vae.end())
      throw std::runtime_error("vae: '" + vae_path + "' lacks '" + p.key() + "' of an " + family.label + " VAE; the file is incomplete or another kind of model");
    if (it->second.numel() != p.value().numel())
      throw std::runtime_error("vae: '" + vae_path + "' is not a VAE for " + family.label + ": '" + p.key() + "' has shape " +
                               shape_str(it->second.sizes()) + ", expected " + shape_str(p.value().sizes()));
  }
  std::vector<std::pair<std::string, at::Tensor>> kept;
  for (auto& entry : model.tensors)
    if (!starts(entry.first, kVaePrefix)) kept.push_back(std::move(entry));
  for (auto& [k, t] : vae) kept.emplace_back(kVaePrefix + k, t);
  model.tensors = std::move(kept);
}

}  // namespace sdtorch
