// Reading and writing tensor files: .safetensors (memory-mapped, zero copy) and PyTorch .ckpt
// (zip of data.pkl + storages, read with a restricted unpickler that never runs code).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sdtorch {

// Tensors in file order. CPU tensors that may alias the mapped file (read-only view semantics).
struct TensorFile {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__
  std::string format;                          // "safetensors" | "ckpt"
};

TensorFile load_tensor_file(const std::string& path);

// Writes atomically (temp file + rename). Refuses to replace an existing file unless overwrite.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata, bool overwrite);

}  // namespace sdtorch
