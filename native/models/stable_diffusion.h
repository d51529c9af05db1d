// The networks of a checkpoint, built from its family's preset row and filled from a tensor file
// by name: file key = component prefix + module parameter name.
#pragma once
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "io/tensor_file.h"
#include "models/clip.h"
#include "models/family.h"
#include "models/lora.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sdtorch {

struct StableDiffusion {
  Family family;
  std::string vae_path;  // a separate VAE file loaded in place of the checkpoint's, or empty
  std::vector<ClipTextModel> text_encoders;  // the family's, in its order (SDXL: CLIP ViT-L, OpenCLIP bigG)
  AutoencoderKL vae{nullptr};
  UNetModel unet{nullptr};
  // The checkpoint's own tensors of the text encoders and UNet, by file key: views of the mapped file,
  // not copies. LoRAs are added to these, and removing them restores these (models/lora.h).
  std::unordered_map<std::string, at::Tensor> originals;
  LoraSet loras;
  // Forwards read the weights; set_loras and moving networks write them.
  std::shared_mutex weights_mutex;
  // Whether the text encoders ran since their file pages were last handed back (release_text_pages).
  bool text_pages_resident = true;
};

// Hands back the pages of the mapped file under the text encoders' weights (those not copied by a
// conversion or a LoRA): they idle while the UNet samples and the VAE decodes, and the next encode
// maps them again from the page cache (~0.1 s for SD 1.x's 0.47 GB fp32 CLIP). Called before a UNet
// call; free when nothing ran since.
void release_text_pages(StableDiffusion& sd);

// What to load: a checkpoint file or diffusers folder (models/sources.h), optionally with a separate
// VAE file and the prediction the file cannot tell ("epsilon" | "v", overriding detection).
struct LoadRequest {
  std::string path;
  std::string vae;
  std::string prediction;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  // float32 on CPU: convs on oneDNN-prepacked weights (layers.h). "auto": the VAE's always, the UNet's
  // when its conv weights are the mapped file's own bytes (then the copies cost no memory); "on", "off".
  std::string prepack = "auto";
  // With prepack: 3x3 convolutions by Winograd F(4x4, 3x3) (layers.h, winograd.h). "auto": the
  // UNet's with >= 256 channels and a weight <= 15 MB (its two upper levels), the VAE's above its
  // deepest level; "on": every one whose channels allow it; "off".
  std::string winograd = "auto";
};

// Throws with a message naming the missing/mis-shaped tensor, or saying what the file is instead.
std::shared_ptr<StableDiffusion> load_stable_diffusion(const LoadRequest& request);

}  // namespace sdtorch
