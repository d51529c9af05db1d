// 3x3 convolutions (stride 1, padding 1) by Winograd's minimal filtering F(4x4, 3x3): each 4x4
// output tile costs 36 multiplications per input/output channel pair instead of 144. Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), with their transform matrices
// (interpolation points 0, +-1, +-2, infinity). In float32 the result differs from the direct
// convolution by ~1e-5 of its largest value (the transforms' rounding), against ~3e-7 for oneDNN's.
#pragma once
#include <torch/torch.h>

namespace sdtorch {

// U = G g G^T per (input, output) channel pair: weight [K, C, 3, 3] -> [36, C, K] float32, the
// 6x6 transformed kernel's entries as 36 GEMM operands. Four times the weight's memory.
at::Tensor winograd_weight(const at::Tensor& weight);

// conv2d(x, weight, bias, stride 1, padding 1) from `u` = winograd_weight(weight).
// x [N, C, H, W] float32 on the CPU, any layout; bias [K] or undefined; returns [N, K, H, W]
// channels-last. The tiles go through in groups whose transformed copies fit the cache.
at::Tensor winograd_conv3x3(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias);

}  // namespace sdtorch
