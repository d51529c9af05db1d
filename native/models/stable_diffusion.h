// The networks of a checkpoint, built from its family's preset row and filled from a tensor file
// by name: file key = component prefix + module parameter name.
#pragma once
#include <memory>
#include <string>

#include "io/tensor_file.h"
#include "models/clip.h"
#include "models/family.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sdtorch {

struct StableDiffusion {
  Family family;
  ClipTextModel clip{nullptr};
  AutoencoderKL vae{nullptr};
  UNetModel unet{nullptr};
};

// Throws with a message naming the missing/mis-shaped tensor, or saying what the file is instead.
std::shared_ptr<StableDiffusion> load_stable_diffusion(const TensorFile& file, const std::string& path, at::Device device,
                                                       at::ScalarType dtype);

}  // namespace sdtorch
