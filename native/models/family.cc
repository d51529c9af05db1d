#include "models/family.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "models/clip.h"
#include "models/keys.h"
#include "models/taesd.h"
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

Family inpainting(Family f) {
  f.name += "-inpaint";
  f.label += " inpainting";
  f.unet.in = 9;  // latents + mask + masked-image latents
  return f;
}

// An OpenCLIP text tower: exact GELU, pads with token 0 after <|endoftext|>; `layers` those run.
ClipConfig open_clip(int64_t width, int64_t heads, int64_t layers) {
  ClipConfig c;
  c.width = width;
  c.heads = heads;
  c.mlp = 4 * width;
  c.layers = layers;
  c.quick_gelu = false;
  c.pad_token = 0;
  return c;
}

// SD 2.x 512 base (epsilon); sd2-v is the 768 v-prediction model with the same networks. ViT-H/14
// runs 23 of its 24 layers.
Family sd2() {
  Family f;
  f.name = "sd2";
  f.label = "SD 2.x";
  f.text_encoders = {open_clip(1024, 16, 23)};
  f.unet.context = 1024;
  f.unet.head_dim = 64;
  f.unet.linear_proj = true;
  return f;
}

Family sd2_v() {
  Family f = sd2();
  f.name = "sd2-v";
  f.label = "SD 2.x 768-v";
  f.prediction = "v";
  f.default_size = 768;
  return f;
}

// OpenCLIP ViT-bigG/14's text tower as SDXL uses it: all 32 layers run (the pooled output needs the
// last), the context is the penultimate hidden state without the final layer norm.
ClipConfig open_clip_big_g(const std::string& prefix) {
  ClipConfig c = open_clip(1280, 20, 32);
  c.hidden_from_end = 1;
  c.context_norm = false;
  c.projection = 1280;
  c.prefix = prefix;
  return c;
}

// SDXL base 1.0 (sgm's configs/inference/sd_xl_base.yaml): CLIP ViT-L and OpenCLIP bigG, both at
// the penultimate layer, context 768 + 1280 = 2048; UNet 320 wide, 3 levels, transformer depth
// 0/2/10 (10 in the middle), 64-wide heads, y = pooled bigG (1280) + 6 numbers x 256 = 2816.
Family sdxl() {
  Family f;
  f.name = "sdxl";
  f.label = "SDXL";
  ClipConfig clip_l;
  clip_l.hidden_from_end = 1;
  clip_l.context_norm = false;
  clip_l.prefix = "conditioner.embedders.0.transformer.";
  f.text_encoders = {clip_l, open_clip_big_g("conditioner.embedders.1.transformer.")};
  f.unet.context = 2048;
  f.unet.head_dim = 64;
  f.unet.linear_proj = true;
  f.unet.mult = {1, 2, 4};
  f.unet.depth = {0, 2, 10};
  f.unet.middle_depth = 10;
  f.unet.adm_in = 2816;
  f.latent_scale = 0.13025;
  f.default_size = 1024;
  f.time_ids = {"original_size", "crop_coords_top_left", "target_size"};
  f.zero_empty_negative = true;
  f.timestep_spacing = "leading";
  return f;
}

// SDXL refiner 1.0 (sd_xl_refiner.yaml): bigG alone (context 1280), UNet 384 wide, 4 levels, depth
// 0/4/4/0 (4 in the middle), y = pooled (1280) + 5 numbers x 256 = 2560 (the aesthetic score last).
Family sdxl_refiner() {
  Family f = sdxl();
  f.name = "sdxl-refiner";
  f.label = "SDXL refiner";
  f.text_encoders = {open_clip_big_g("conditioner.embedders.0.transformer.")};
  f.unet.ch = 384;
  f.unet.time_dim = 384;
  f.unet.context = 1280;
  f.unet.mult = {1, 2, 4, 4};
  f.unet.depth = {0, 4, 4, 0};
  f.unet.middle_depth = 4;
  f.unet.adm_in = 2560;
  f.time_ids = {"original_size", "crop_coords_top_left", "aesthetic_score"};
  f.zero_empty_negative = false;  // the refiner's model_index.json: force_zeros_for_empty_prompt false
  return f;
}

// The tiny rows keep their family's structure at toy widths, so unit and CLI tests run in milliseconds.
void make_tiny_clip(ClipConfig& c, int64_t width) {
  c.width = width;
  c.layers = 2;
  c.heads = 2;
  c.mlp = 2 * width;
  if (c.projection) c.projection = width;
}

void make_tiny_unet(Family& f, const std::string& name, const std::string& label) {
  f.name = name;
  f.label = label;
  f.vae.ch = 32;
  f.vae.mult = {1, 2};
  f.unet.ch = 32;
  f.unet.time_dim = 32;
  f.unet.mult = {1, 2};
}

Family tiny() {
  Family f = sd1();
  make_tiny_unet(f, "tiny", "tiny test model (SD 1.x structure)");
  make_tiny_clip(f.text_encoders[0], 32);
  f.unet.context = 32;
  f.unet.depth = {1, 1};
  return f;
}

// SDXL's structures: the last encoder (bigG's place) 40 wide with its projection, a first one
// (CLIP ViT-L's) 32 wide; no attention at the first level, depth 2 (and 2 in the middle), 8-wide
// heads, 8-wide sinusoids for the time ids (y = 40 + 8 per number: 88 for the base, 80 the refiner).
Family tiny_xl(Family f, const std::string& name, const std::string& label) {
  make_tiny_unet(f, name, label);
  f.unet.context = 0;
  for (size_t i = 0; i < f.text_encoders.size(); ++i) {
    make_tiny_clip(f.text_encoders[i], i + 1 == f.text_encoders.size() ? 40 : 32);
    f.unet.context += f.text_encoders[i].width;
  }
  f.unet.head_dim = 8;
  f.unet.depth = {0, 2};
  f.unet.middle_depth = 2;
  f.unet.time_id_dim = 8;
  int64_t numbers = 0;
  for (const auto& id : f.time_ids) numbers += id == "aesthetic_score" ? 1 : 2;
  f.unet.adm_in = f.text_encoders.back().projection + numbers * f.unet.time_id_dim;
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

const at::Tensor* unet_tensor(const TensorFile& f, const std::string& name) { return find(f, std::string(kUNetPrefix) + name); }

bool has_key_part(const TensorFile& f, const std::string& part) {
  for (const auto& [k, t] : f.tensors)
    if (k.find(part) != std::string::npos) return true;
  return false;
}

std::string metadata(const TensorFile& f, const std::string& key) {
  auto it = f.metadata.find(key);
  return it == f.metadata.end() ? "" : it->second;
}

}  // namespace

const std::vector<Family>& families() {
  static const std::vector<Family> table = {sd1(),  inpainting(sd1()), sd2(),       sd2_v(),          inpainting(sd2()), sdxl(),
                                            sdxl_refiner(), tiny(), inpainting(tiny()), tiny_xl(sdxl(), "tiny-sdxl", "tiny test model (SDXL structure)"),
                                            tiny_xl(sdxl_refiner(), "tiny-sdxl-refiner", "tiny test model (SDXL refiner structure)")};
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
  // Families sdtorch does not load, by the blocks only they have (diffusers' CHECKPOINT_KEY_NAMES).
  if (has_key_part(f, "joint_blocks.")) return "sd3";
  if (has_key_part(f, "double_blocks.")) return "flux";
  if (has_key_part(f, ".time_stack.") || has_key_part(f, ".time_mixer.")) return "video";
  if (const at::Tensor* conv_in = unet_tensor(f, "input_blocks.0.0.weight")) {
    const bool nine = conv_in->dim() == 4 && conv_in->size(1) == 9;
    if (has_prefix(f, "conditioner.embedders.")) {
      // The refiner has the bigG tower alone, as embedder 0 (the base: CLIP ViT-L there, bigG as 1).
      if (!nine && !has_prefix(f, "conditioner.embedders.1.")) return "sdxl-refiner";
      return nine ? "sdxl-inpaint" : "sdxl";
    }
    if (conv_in->dim() == 4 && conv_in->size(1) == 7) return "upscaler";  // x4 upscaler: latents + low-res image
    // The cross-attention context width: 768 (CLIP ViT-L) or 1024 (OpenCLIP ViT-H), as diffusers tells v1 from v2.
    // The text encoder's width says it too (fragments of files, and either layout of it).
    const at::Tensor* to_k = unet_tensor(f, "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
    const at::Tensor* q = find(f, "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight");
    const bool v2 = (to_k && to_k->dim() == 2 && to_k->size(1) == 1024) || (q && q->dim() == 2 && q->size(1) == 1024) ||
                    has_prefix(f, "cond_stage_model.model.");
    return std::string(v2 ? "sd2" : "sd1") + (nine ? "-inpaint" : "");
  }
  if (has_prefix(f, "conditioner.embedders.")) return has_prefix(f, "conditioner.embedders.1.") ? "sdxl" : "sdxl-refiner";
  for (const auto& [k, t] : f.tensors)
    if (k.find("lora_") != std::string::npos || k.find(".lora.") != std::string::npos || k.find("lora_A") != std::string::npos)
      return "lora";
  if (find(f, "encoder.conv_in.weight") || find(f, "decoder.conv_in.weight") || find(f, "first_stage_model.decoder.conv_in.weight"))
    return "vae";
  if (find(f, "input_blocks.0.0.weight") || find(f, "conv_in.weight")) return "unet";
  // Textual-inversion embeddings: SDXL's clip_l/clip_g, A1111's string_to_param, emb_params.
  if (find(f, "clip_g") || find(f, "clip_l") || find(f, "emb_params") || has_prefix(f, "string_to_param.")) return "embedding";
  if (looks_like_taesd(f)) return "taesd";
  return "unknown";
}

std::string prediction_name(const std::string& s) {
  if (s == "epsilon" || s == "eps") return "epsilon";
  if (s == "v" || s == "v_prediction" || s == "v-prediction") return "v";
  throw std::invalid_argument("unknown prediction '" + s + "'; use 'epsilon' or 'v'");
}

std::string describe_kind(const std::string& kind) {
  static const std::map<std::string, std::string> what = {
      {"sd1", "an SD 1.x checkpoint"}, {"sd1-inpaint", "an SD 1.x inpainting checkpoint"}, {"sd2", "an SD 2.x checkpoint"},
      {"sd2-inpaint", "an SD 2.x inpainting checkpoint"}, {"sdxl", "an SDXL checkpoint"}, {"sdxl-refiner", "an SDXL refiner checkpoint"}, {"sdxl-inpaint", "an SDXL inpainting checkpoint"},
      {"sd3", "a Stable Diffusion 3 checkpoint (MMDiT)"}, {"flux", "a FLUX checkpoint"},
      {"video", "a video model (Stable Video Diffusion: temporal layers)"}, {"upscaler", "the SD x4 upscaler (7 input channels)"},
      {"lora", "a LoRA (load it with loras: or <lora:name:weight>)"},
      {"embedding", "a textual-inversion embedding (put it in an embeddings folder and use its file name in prompts)"}, {"vae", "a VAE alone (pass it as the vae option)"},
      {"taesd", "a TAESD (tiny autoencoder; pass it as the taesd option)"},
      {"unet", "a UNet alone"}, {"unknown", "nothing sdtorch knows"}};
  auto it = what.find(kind);
  return it == what.end() ? kind : it->second;
}

Family detect_family(const TensorFile& file, const std::string& path, const std::string& prediction) {
  const std::string kind = checkpoint_kind(file);
  static const std::vector<std::string> loadable = {"sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sdxl-refiner"};
  if (std::find(loadable.begin(), loadable.end(), kind) == loadable.end())
    throw std::runtime_error("'" + path + (kind == "unknown" ? "' is not a Stable Diffusion checkpoint (no tensor names of one)"
                                                              : "' looks like " + describe_kind(kind)) +
                             "; sdtorch loads SD 1.x, SD 2.x and SDXL checkpoints (single files with UNet, VAE and text "
                             "encoders, SD 1.x/2.x inpainting ones too, or SD 1.x/2.x diffusers folders)");
  // The caller's word, else the file's own: a diffusers folder's scheduler, ModelSpec metadata.
  std::string said = prediction;
  for (const char* key : {"sdtorch.prediction", "modelspec.prediction_type"}) {
    if (!said.empty()) break;
    said = metadata(file, key);
    if (said.empty()) continue;
    try {
      said = prediction_name(said);
    } catch (const std::exception&) {
      throw std::runtime_error("'" + path + "' says its prediction is '" + said + "' (" +
                               (key[0] == 's' ? "scheduler_config.json prediction_type" : "metadata modelspec.prediction_type") +
                               "), which sdtorch does not know; pass prediction: 'epsilon' or 'v' (CLI --prediction)");
    }
  }
  // SDXL v-prediction fine-tunes mark themselves with an empty `v_pred` tensor (the convention of
  // ComfyUI's model detection, which such files are made for).
  if (said.empty() && (kind == "sdxl" || kind == "sdxl-refiner") && find(file, "v_pred")) said = "v";
  if (!said.empty()) said = prediction_name(said);
  // SD 1.x, SDXL and their tiny test presets share structures; the UNet's width tells them apart.
  const bool is_tiny = unet_tensor(file, "input_blocks.0.0.weight")->size(0) == family("tiny").unet.ch;
  Family f;
  if (kind == "sdxl" || kind == "sdxl-refiner") {
    f = family(is_tiny ? "tiny-" + kind : kind);
  } else if (kind == "sd2") {
    // diffusers' rule for SD 2.x files (global step 875000 = the 512 base model).
    const bool base = said.empty() ? metadata(file, "global_step") == "875000" : said == "epsilon";
    f = family(base ? "sd2" : "sd2-v");
  } else if (kind == "sd2-inpaint") {
    f = family("sd2-inpaint");
  } else {
    f = family(std::string(is_tiny ? "tiny" : "sd15") + (kind == "sd1-inpaint" ? "-inpaint" : ""));
  }
  if (!said.empty()) f.prediction = said;
  if (std::string size = metadata(file, "sdtorch.default_size"); !size.empty()) f.default_size = std::stoll(size);
  return f;
}

std::string component_of(const std::string& key) {
  if (key.rfind(kUNetPrefix, 0) == 0) return "unet";
  if (key.rfind(kVaePrefix, 0) == 0) return "vae";
  if (key.rfind("cond_stage_model.", 0) == 0 || key.rfind("conditioner.", 0) == 0) return "textEncoder";  // any text-encoder layout
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
  for (const auto& te : c.text_encoders) add(*ClipTextModel(te), te.prefix.c_str());
  return out;
}

}  // namespace sdtorch
