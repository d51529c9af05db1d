#include "models/vae_tiling.h"

namespace sdtorch {

namespace {

// Fades the first `extent` rows (dim 2) or columns (dim 3) of `b` in from the last ones of `a`.
at::Tensor blend(const at::Tensor& a, at::Tensor b, int64_t dim, int64_t extent) {
  extent = std::min({extent, a.size(dim), b.size(dim)});
  if (extent <= 0) return b;
  auto w = at::arange(extent, b.options()) / double(extent);  // 0 .. (extent-1)/extent
  w = dim == 2 ? w.view({1, 1, extent, 1}) : w.view({1, 1, 1, extent});
  b = b.clone();
  b.narrow(dim, 0, extent).copy_(a.narrow(dim, a.size(dim) - extent, extent) * (1 - w) + b.narrow(dim, 0, extent) * w);
  return b;
}

}  // namespace

at::Tensor tiled(const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& x, int64_t tile, double scale,
                 double overlap) {
  const int64_t stride = int64_t(tile * (1 - overlap)), out_tile = int64_t(tile * scale);
  const int64_t extent = int64_t(out_tile * overlap), keep = out_tile - extent;
  const int64_t H = x.size(2), W = x.size(3);
  std::vector<std::vector<at::Tensor>> tiles;
  for (int64_t i = 0; i < H; i += stride) {
    tiles.emplace_back();
    for (int64_t j = 0; j < W; j += stride) tiles.back().push_back(fn(x.slice(2, i, i + tile).slice(3, j, j + tile)));
  }
  std::vector<at::Tensor> rows;
  for (size_t r = 0; r < tiles.size(); ++r) {
    std::vector<at::Tensor> row;
    for (size_t c = 0; c < tiles[r].size(); ++c) {
      at::Tensor t = tiles[r][c];
      if (r > 0) t = blend(tiles[r - 1][c], t, 2, extent);
      if (c > 0) t = blend(tiles[r][c - 1], t, 3, extent);
      tiles[r][c] = t;  // the next tiles blend from the blended one, as diffusers does
      row.push_back(t.slice(2, 0, keep).slice(3, 0, keep));
    }
    rows.push_back(at::cat(row, 3));
  }
  return at::cat(rows, 2).slice(2, 0, int64_t(H * scale)).slice(3, 0, int64_t(W * scale));
}

}  // namespace sdtorch
