// Model families: typed network configs, and the preset table with one row per family. A
// checkpoint's family is detected once, from its tensor names and shapes (family.cc); everything
// the rest of the code needs to know about it (latent channels and scale, prediction, text-encoder
// width, default size) is read from its row. `tiny` keeps SD 1.x's structure at toy widths so unit
// and CLI tests run in milliseconds.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/tensor_file.h"

namespace sdtorch {

struct ClipConfig {
  int64_t vocab = 49408, positions = 77, width = 768, layers = 12, heads = 12, mlp = 3072;
};

struct VaeConfig {
  int64_t ch = 128, z = 4, res_blocks = 2, groups = 32;
  std::vector<int64_t> mult{1, 2, 4, 4};
};

struct UNetConfig {
  int64_t in = 4, out = 4, ch = 320, res_blocks = 2, heads = 8, context = 768, time_dim = 320, groups = 32;
  std::vector<int64_t> mult{1, 2, 4, 4};
  std::vector<bool> attention{true, true, true, false};  // per level
};

// Checkpoint key prefixes of the original LDM layout: file key = prefix + module parameter name.
inline constexpr const char* kUNetPrefix = "model.diffusion_model.";
inline constexpr const char* kVaePrefix = "first_stage_model.";
inline constexpr const char* kClipPrefix = "cond_stage_model.transformer.text_model.";

// One row of the preset table.
struct Family {
  std::string name;          // the preset: "sd15", "tiny"
  std::string label;         // for messages: "SD 1.x"
  ClipConfig clip;
  VaeConfig vae;
  UNetConfig unet;
  double latent_scale = 0.18215;           // UNet latents = latent_scale * VAE latents
  std::string prediction = "epsilon";      // what the UNet predicts: "epsilon" | "v"
  int64_t default_size = 512;              // pixels, the training resolution

  int64_t vae_scale_factor() const { return int64_t(1) << (vae.mult.size() - 1); }  // pixels per latent cell
};

// Which network a file key belongs to: "unet", "vae", "textEncoder" or "other" (for `sdtorch info`).
std::string component_of(const std::string& key);

// The preset table ("sd15", "tiny").
const std::vector<Family>& families();
const Family& family(const std::string& name);

// What a tensor file looks like, for errors and `sdtorch info`: "sd1", "sd1-inpaint", "sd2", "sdxl",
// "lora", "vae", "unet", "unknown".
std::string checkpoint_kind(const TensorFile& file);

// The preset row a checkpoint loads as; throws saying what the file is when no row fits.
const Family& detect_family(const TensorFile& file, const std::string& path);

// File key -> shape for every model tensor of a preset, for writing test checkpoints.
std::vector<std::pair<std::string, std::vector<int64_t>>> preset_manifest(const std::string& preset);

}  // namespace sdtorch
