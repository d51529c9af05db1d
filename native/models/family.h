// Model families: typed network configs, and the preset table with one row per family. A
// checkpoint's family is detected once, from its tensor names and shapes (family.cc); everything
// the rest of the code needs to know about it (latent channels and scale, prediction, text-encoder
// width, default size) is read from its row. `tiny` keeps SD 1.x's structure at toy widths so unit
// and CLI tests run in milliseconds.
//
// Rows: sd15, sd15-inpaint, sd2 (512 base, epsilon), sd2-v (768, v-prediction), sd2-inpaint, sdxl,
// sdxl-refiner, tiny, tiny-inpaint, tiny-sdxl, tiny-sdxl-refiner. SD 2.x differs from SD 1.x only in
// numbers and switches read here: the OpenCLIP ViT-H text encoder (GELU, 23 of its 24 layers, pad
// token 0), 64-wide attention heads, linear proj_in/proj_out and a 1024-wide context. SDXL adds a
// second text encoder (OpenCLIP ViT-bigG with its projection: the pooled text vector), both read
// at their penultimate layer; transformer depth per level; and the vector input `y` of the UNet
// (label_emb: pooled text + sinusoidal embeddings of the size/crop/aesthetic numbers).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_file.h"

namespace sdtorch {

struct ClipConfig {
  // layers: those the model runs (SD 2.x runs 23 of OpenCLIP's 24, as ldm's "penultimate" and
  // diffusers' converted config do; the file's last layer is not loaded).
  int64_t vocab = 49408, positions = 77, width = 768, layers = 12, heads = 12, mlp = 3072;
  bool quick_gelu = true;   // CLIP ViT-L: x·σ(1.702x); OpenCLIP: exact GELU
  int64_t pad_token = 49407;  // what fills a prompt after <|endoftext|>: itself (SD 1.x), 0 (SD 2.x)
  // The context is the hidden state `hidden_from_end` layers before the last (SDXL: 1, sgm's
  // "penultimate" / diffusers' hidden_states[-2]), through the final layer norm when context_norm
  // (SD 1.x/2.x: yes; SDXL: no, as sgm's non-legacy embedders and diffusers).
  int64_t hidden_from_end = 0;
  bool context_norm = true;
  int64_t projection = 0;  // text_projection's width (the pooled, projected output; OpenCLIP bigG: 1280); 0: none
  // File key prefix: the transformer sits under `<prefix>text_model.`, the projection at `<prefix>text_projection.weight`.
  std::string prefix = "cond_stage_model.transformer.";
};

struct VaeConfig {
  int64_t ch = 128, z = 4, res_blocks = 2, groups = 32;
  std::vector<int64_t> mult{1, 2, 4, 4};
};

struct UNetConfig {
  int64_t in = 4, out = 4, ch = 320, res_blocks = 2, heads = 8, context = 768, time_dim = 320, groups = 32;
  int64_t head_dim = 0;       // > 0: heads = channels / head_dim at each level (SD 2.x: 64); else `heads`
  bool linear_proj = false;   // SpatialTransformer proj_in/proj_out as Linear [C, C] (SD 2.x), else 1x1 conv
  std::vector<int64_t> mult{1, 2, 4, 4};
  std::vector<int64_t> depth{1, 1, 1, 0};  // transformer blocks per level (0: no attention there)
  int64_t middle_depth = 1;
  // label_emb's input width (SDXL's y: pooled text + one `time_id_dim`-wide sinusoid per size/crop/
  // aesthetic number, sgm's ConcatTimestepEmbedderND); 0: no vector conditioning.
  int64_t adm_in = 0, time_id_dim = 256;

  int64_t heads_at(int64_t channels) const { return head_dim > 0 ? channels / head_dim : heads; }
};

// Checkpoint key prefixes of the original LDM layout: file key = prefix + module parameter name.
// (The text encoders' prefixes are in their ClipConfig: SD 1.x/2.x `cond_stage_model.transformer.`,
// SDXL `conditioner.embedders.N.transformer.`.)
inline constexpr const char* kUNetPrefix = "model.diffusion_model.";
inline constexpr const char* kVaePrefix = "first_stage_model.";

// One row of the preset table.
struct Family {
  std::string name;          // the preset: "sd15", "sd2-v", "tiny", ...
  std::string label;         // for messages: "SD 1.x"
  std::vector<ClipConfig> text_encoders{ClipConfig{}};  // SDXL: CLIP ViT-L, then OpenCLIP bigG (context = both, joined)
  VaeConfig vae;
  UNetConfig unet;
  double latent_scale = 0.18215;           // UNet latents = latent_scale * VAE latents
  std::string prediction = "epsilon";      // what the UNet predicts: "epsilon" | "v"
  int64_t default_size = 512;              // pixels, the training resolution
  // The numbers after the pooled text in y, in order (sgm's size embedders; diffusers' add_time_ids):
  // SDXL "original_size", "crop_coords_top_left", "target_size" (2 each); the refiner "aesthetic_score" (1) for the last.
  std::vector<std::string> time_ids;
  bool zero_empty_negative = false;        // diffusers' force_zeros_for_empty_prompt (SDXL base)
  std::string timestep_spacing;            // the scheduler config's timestep_spacing ("leading" for SDXL); empty: the sampler's

  int64_t vae_scale_factor() const { return int64_t(1) << (vae.mult.size() - 1); }  // pixels per latent cell
};

// Which network a file key belongs to: "unet", "vae", "textEncoder" or "other" (for `sdtorch info`).
std::string component_of(const std::string& key);

// The preset table.
const std::vector<Family>& families();
const Family& family(const std::string& name);

// What a tensor file looks like, for errors and `sdtorch info`: "sd1", "sd1-inpaint", "sd2",
// "sd2-inpaint", "sdxl", "sdxl-refiner", "sdxl-inpaint", "sd3", "flux", "video", "upscaler", "lora", "vae", "unet",
// "embedding", "unknown". Reads file keys through models/keys.h, so any layout loading accepts is recognised.
std::string checkpoint_kind(const TensorFile& file);

// The preset row a checkpoint loads as (a copy: loading may override its prediction); throws saying
// what the file is when no row fits. SD 2.x's prediction cannot be read from its weights: it is
// decided as diffusers' from_single_file decides it (single_file_utils._legacy_load_scheduler):
// v-prediction (the 768 model), unless the checkpoint's global_step is 875000 (the 512 base);
// a diffusers folder's scheduler config or a ModelSpec `modelspec.prediction_type` in the file's
// metadata, when present, is the file's own word and wins.
// `prediction` ("epsilon" | "v", any spelling prediction_name takes; empty: none) is the caller's
// word and wins over everything, the file's metadata unread; for SD 2.x it also picks the row
// (epsilon: the 512 base, v: the 768 model).
Family detect_family(const TensorFile& file, const std::string& path, const std::string& prediction = "");

// What checkpoint_kind's names mean, for messages: "an SD 2.x checkpoint", "a LoRA", ...
std::string describe_kind(const std::string& kind);

// "epsilon" | "v" from the ways users and files spell it ("eps", "v_prediction", ...); throws otherwise.
std::string prediction_name(const std::string& spelling);

// File key -> shape for every model tensor of a preset, for writing test checkpoints.
std::vector<std::pair<std::string, std::vector<int64_t>>> preset_manifest(const std::string& preset);

}  // namespace sdtorch
