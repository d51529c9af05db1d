// The three networks of an SD 1.x checkpoint, built from a preset and filled from a tensor file
// by name: file key = component prefix + module parameter name.
#pragma once
#include <memory>
#include <string>

#include "checkpoint.h"
#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sdtorch {

struct StableDiffusion {
  SDConfig config;
  ClipTextModel clip{nullptr};
  AutoencoderKL vae{nullptr};
  UNetModel unet{nullptr};
};

// What a tensor file looks like, for errors and `sdtorch info`: "sd1", "sd1-inpaint", "sd2", "sdxl",
// "lora", "vae", "unet", "unknown".
std::string checkpoint_family(const TensorFile& file);

// File key -> shape for every model tensor of a preset ("sd15" or "tiny"), for writing test checkpoints.
std::vector<std::pair<std::string, std::vector<int64_t>>> preset_manifest(const std::string& preset);

// Throws with a message naming the missing/mis-shaped tensor, or saying what the file is instead.
std::shared_ptr<StableDiffusion> load_stable_diffusion(const TensorFile& file, const std::string& path, at::Device device,
                                                       at::ScalarType dtype);

}  // namespace sdtorch
