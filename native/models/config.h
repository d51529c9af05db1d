// Typed model configs with presets. SD 1.x is the real one; `tiny` keeps the same structure at toy
// widths so unit tests and CLI tests run in milliseconds.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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

struct SDConfig {
  std::string name;
  ClipConfig clip;
  VaeConfig vae;
  UNetConfig unet;
};

inline SDConfig sd15_config() { return {"sd15", {}, {}, {}}; }

inline SDConfig tiny_config() {
  SDConfig c{"tiny", {}, {}, {}};
  c.clip = {49408, 77, 32, 2, 2, 64};
  c.vae.ch = 32;
  c.vae.mult = {1, 2};
  c.unet.ch = 32;
  c.unet.context = 32;
  c.unet.time_dim = 32;
  c.unet.mult = {1, 2};
  c.unet.attention = {true, true};
  return c;
}

}  // namespace sdtorch
