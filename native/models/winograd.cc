#include "models/winograd.h"

#include <ATen/Parallel.h>
#include <sys/mman.h>

#include <algorithm>
#include <new>

// The transforms are memory-bound loops over channels: built for the machine's vector width.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SDTORCH_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SDTORCH_VECTOR_CLONES
#endif

namespace sdtorch {

namespace {

constexpr int64_t kBlock = 16;                  // channels per inner loop: one AVX-512 register
// Tiles per GEMM: V and M within ~16 MB, but at least 256 rows (smaller GEMMs run well below peak).
constexpr int64_t kGroupBytes = 16 << 20, kMinGroup = 256;

struct Tiles {
  int64_t H, W, th, tw;  // image size; tiles per column and row (ceil(H / 4), ceil(W / 4))
  int64_t first, count;  // this group: global index of its first tile, number of tiles
};

// V = B^T d B for each 6x6 input patch d (rows 4ty-1 .. 4ty+4, zero outside the image).
// x: NHWC [.., H, W, C]; v: [36, count, C].
SDTORCH_VECTOR_CLONES
void input_transform(const float* x, int64_t C, const Tiles& s, int64_t begin, int64_t end, float* v) {
  float d[6][6][kBlock], t[6][6][kBlock];
  for (int64_t i = begin; i < end; ++i) {
    const int64_t g = s.first + i, img = g / (s.th * s.tw), ty = g % (s.th * s.tw) / s.tw, tx = g % s.tw;
    const float* image = x + img * s.H * s.W * C;
    for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
      for (int a = 0; a < 6; ++a) {
        const int64_t y = ty * 4 - 1 + a;
        for (int b = 0; b < 6; ++b) {
          const int64_t xx = tx * 4 - 1 + b;
          if (y < 0 || y >= s.H || xx < 0 || xx >= s.W) {
            for (int64_t c = 0; c < kBlock; ++c) d[a][b][c] = 0.f;
          } else {
            const float* p = image + (y * s.W + xx) * C + c0;
            for (int64_t c = 0; c < kBlock; ++c) d[a][b][c] = p[c];
          }
        }
      }
      for (int b = 0; b < 6; ++b)  // t = B^T d, column by column
        for (int64_t c = 0; c < kBlock; ++c) {
          const float d0 = d[0][b][c], d1 = d[1][b][c], d2 = d[2][b][c], d3 = d[3][b][c], d4 = d[4][b][c], d5 = d[5][b][c];
          t[0][b][c] = 4.f * d0 - 5.f * d2 + d4;
          t[1][b][c] = -4.f * d1 - 4.f * d2 + d3 + d4;
          t[2][b][c] = 4.f * d1 - 4.f * d2 - d3 + d4;
          t[3][b][c] = -2.f * d1 - d2 + 2.f * d3 + d4;
          t[4][b][c] = 2.f * d1 - d2 - 2.f * d3 + d4;
          t[5][b][c] = 4.f * d1 - 5.f * d3 + d5;
        }
      for (int a = 0; a < 6; ++a) {  // V = t B, row by row, stored as the a*6+b-th GEMM's row i
        float* out = v + (a * 6 * s.count + i) * C + c0;
        const int64_t next = s.count * C;  // from entry (a, b) to (a, b + 1)
        for (int64_t c = 0; c < kBlock; ++c) {
          const float t0 = t[a][0][c], t1 = t[a][1][c], t2 = t[a][2][c], t3 = t[a][3][c], t4 = t[a][4][c], t5 = t[a][5][c];
          out[c] = 4.f * t0 - 5.f * t2 + t4;
          out[next + c] = -4.f * t1 - 4.f * t2 + t3 + t4;
          out[2 * next + c] = 4.f * t1 - 4.f * t2 - t3 + t4;
          out[3 * next + c] = -2.f * t1 - t2 + 2.f * t3 + t4;
          out[4 * next + c] = 2.f * t1 - t2 - 2.f * t3 + t4;
          out[5 * next + c] = 4.f * t1 - 5.f * t3 + t5;
        }
      }
    }
  }
}

// Y = A^T M A (+ bias) for each tile's 6x6 GEMM results, the 4x4 of it inside the image stored.
// m: [36, count, K]; y: NHWC [.., H, W, K].
SDTORCH_VECTOR_CLONES
void output_transform(const float* m, const float* bias, int64_t K, const Tiles& s, int64_t begin, int64_t end, float* y) {
  float t[4][6][kBlock];
  for (int64_t i = begin; i < end; ++i) {
    const int64_t g = s.first + i, img = g / (s.th * s.tw), ty = g % (s.th * s.tw) / s.tw, tx = g % s.tw;
    const int64_t rows = std::min<int64_t>(4, s.H - ty * 4), cols = std::min<int64_t>(4, s.W - tx * 4);
    float* image = y + img * s.H * s.W * K;
    for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
      const int64_t next = 6 * s.count * K;  // from entry (a, b) to (a + 1, b)
      for (int b = 0; b < 6; ++b) {  // t = A^T M, column by column
        const float* in = m + (b * s.count + i) * K + k0;
        for (int64_t c = 0; c < kBlock; ++c) {
          const float m0 = in[c], m1 = in[next + c], m2 = in[2 * next + c], m3 = in[3 * next + c], m4 = in[4 * next + c],
                      m5 = in[5 * next + c];
          t[0][b][c] = m0 + m1 + m2 + m3 + m4;
          t[1][b][c] = m1 - m2 + 2.f * (m3 - m4);
          t[2][b][c] = m1 + m2 + 4.f * (m3 + m4);
          t[3][b][c] = m1 - m2 + 8.f * (m3 - m4) + m5;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {  // Y = t A, row by row
        float out[4][kBlock];
        for (int64_t c = 0; c < kBlock; ++c) {
          const float t0 = t[r][0][c], t1 = t[r][1][c], t2 = t[r][2][c], t3 = t[r][3][c], t4 = t[r][4][c], t5 = t[r][5][c];
          const float b0 = bias ? bias[k0 + c] : 0.f;
          out[0][c] = t0 + t1 + t2 + t3 + t4 + b0;
          out[1][c] = t1 - t2 + 2.f * (t3 - t4) + b0;
          out[2][c] = t1 + t2 + 4.f * (t3 + t4) + b0;
          out[3][c] = t1 - t2 + 8.f * (t3 - t4) + t5 + b0;
        }
        float* row = image + ((ty * 4 + r) * s.W + tx * 4) * K + k0;
        for (int64_t q = 0; q < cols; ++q)
          for (int64_t c = 0; c < kBlock; ++c) row[q * K + c] = out[q][c];
      }
    }
  }
}

}  // namespace

at::Tensor winograd_weight(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3, "winograd_weight: expected a [K, C, 3, 3] weight, got ",
              weight.sizes());
  // G (6x3) of F(4x4, 3x3). Each kernel's 36 entries in float64, so that only the final rounding is float32's.
  static constexpr double G[6][3] = {{1. / 4, 0, 0}, {-1. / 6, -1. / 6, -1. / 6}, {-1. / 6, 1. / 6, -1. / 6},
                                     {1. / 24, 1. / 12, 1. / 6}, {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
  const at::Tensor w = weight.to(at::kCPU, at::kFloat).contiguous();
  const int64_t K = w.size(0), C = w.size(1);
  // Its own pages, not the heap's: dropped while the VAE decodes and remade after (the addon's vaeDecode),
  // it would otherwise come back elsewhere in the heap, around the activations freed in between.
  const size_t bytes = size_t(36 * C * K) * sizeof(float);
  void* pages = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pages == MAP_FAILED) throw std::bad_alloc();
  at::Tensor u = at::from_blob(pages, {36, C, K}, [bytes](void* p) { munmap(p, bytes); }, w.options());
  const float* in = w.data_ptr<float>();
  float* out = u.data_ptr<float>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      for (int64_t k = 0; k < K; ++k) {  // read g[k][c] (9 floats), write U[.][c][k]: 36 streams along k
        const float* g = in + (k * C + c) * 9;
        double t[6][3];  // G g
        for (int a = 0; a < 6; ++a)
          for (int j = 0; j < 3; ++j) t[a][j] = G[a][0] * g[j] + G[a][1] * g[3 + j] + G[a][2] * g[6 + j];
        for (int a = 0; a < 6; ++a)  // (G g) G^T
          for (int b = 0; b < 6; ++b) out[((a * 6 + b) * C + c) * K + k] = float(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
      }
  });
  return u;
}

at::Tensor winograd_conv3x3(const at::Tensor& input, const at::Tensor& u, const at::Tensor& bias) {
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = u.size(2);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu() && u.size(0) == 36 && u.size(1) == C && C % kBlock == 0 &&
                  K % kBlock == 0,
              "winograd_conv3x3: expected float32 CPU input with ", u.size(1), " channels (a multiple of ", kBlock, "), got ", x.sizes());
  const at::Tensor b = bias.defined() ? bias.contiguous() : bias;
  at::Tensor y = at::empty({N, K, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, tiles = N * th * tw;
  const int64_t group = std::min(tiles, std::max(kMinGroup, kGroupBytes / (36 * 4 * (C + K))));
  // One buffer pair for all groups; the last (smaller) group views their beginnings.
  at::Tensor v_buffer = at::empty({36 * group * C}, x.options()), m_buffer = at::empty({36 * group * K}, x.options());
  for (int64_t first = 0; first < tiles; first += group) {
    const Tiles s{H, W, th, tw, first, std::min(group, tiles - first)};
    at::Tensor v = v_buffer.narrow(0, 0, 36 * s.count * C).view({36, s.count, C});
    at::Tensor m = m_buffer.narrow(0, 0, 36 * s.count * K).view({36, s.count, K});
    at::parallel_for(0, s.count, 1, [&](int64_t begin, int64_t end) { input_transform(x.data_ptr<float>(), C, s, begin, end, v.data_ptr<float>()); });
    at::bmm_out(m, v, u);
    at::parallel_for(0, s.count, 1, [&](int64_t begin, int64_t end) {
      output_transform(m.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr, K, s, begin, end, y.data_ptr<float>());
    });
  }
  return y;
}

}  // namespace sdtorch
