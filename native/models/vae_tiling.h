// Tiled VAE encode/decode: large images in overlapping tiles, overlaps blended linearly (the scheme
// of diffusers' enable_vae_tiling), so memory stays that of one tile whatever the image size.
#pragma once
#include <functional>

#include <torch/torch.h>

namespace sdtorch {

// Applies `fn` (which maps a [B,C,t,t] tile to [B,C',t*scale,t*scale]) over `x` in tiles of `tile`
// input cells overlapping by `overlap` (a fraction), and stitches the outputs; the result has the
// size fn would give for the whole input.
at::Tensor tiled(const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& x, int64_t tile, double scale,
                 double overlap = 0.25);

}  // namespace sdtorch
