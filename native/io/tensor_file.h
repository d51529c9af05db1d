// Tensor files as the loaders see them: names -> CPU tensors that may alias a memory map.
// Formats: .safetensors (io/safetensors.h) and PyTorch zip checkpoints (io/ckpt.h).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/mapped_file.h"

namespace sdtorch {

// Tensors in file order. CPU tensors that may alias the mapped file (read-only view semantics).
struct TensorFile {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__; a .ckpt's global_step
  std::string format;                          // "safetensors" | "ckpt"
};

// Picks the format from the file's first bytes. Throws with what the file is and what is supported.
// header_only: the format and metadata without tensors (a .ckpt's pickle is not read).
TensorFile load_tensor_file(const std::string& path, bool header_only = false);

// A CPU tensor over bytes of the map; the deleter keeps the map alive as long as any view is.
at::Tensor view_of(const std::shared_ptr<MappedFile>& file, uint64_t offset, at::IntArrayRef shape, at::ScalarType dtype);

// Hands the memory pages under `view` (a tensor of load_tensor_file) back to the system: they are read
// from the file again when next touched, so contents stay and only resident memory goes. Pages the
// view shares with a neighbour are kept. Anything else than a view of a live map is left alone.
void release_pages(const at::Tensor& view);

// The same for any CPU tensor: a map's pages as above; other memory as a hint (MADV_PAGEOUT), to swap
// if there is any, otherwise it stays. Contents never change.
void reclaim_pages(const at::Tensor& tensor);

// "[2, 4, 64, 64]", for messages.
std::string shape_str(at::IntArrayRef shape);

[[noreturn]] void damaged(const std::string& path, const std::string& why);

}  // namespace sdtorch
