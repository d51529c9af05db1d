// A restricted unpickler for PyTorch checkpoints: it knows dicts, lists, tuples, numbers,
// strings, tensors and storages, and refuses every other global. Nothing from the file runs.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sdtorch::pickle {

struct Value;
using Ref = std::shared_ptr<Value>;

struct Value {
  enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, StorageType, Tensor } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;                              // Str; Global "module.name"
  std::vector<Ref> items;                     // Tuple, List
  std::vector<std::pair<Ref, Ref>> entries;   // Dict (insertion order)
  at::ScalarType dtype = at::kFloat;          // StorageType
  at::Tensor tensor;                          // Tensor
};

// Returns the storage bytes of zip entry `key` as a 1-D tensor of `dtype` with `numel` elements.
using StorageLoader = std::function<at::Tensor(const std::string& key, at::ScalarType dtype, int64_t numel)>;

// Throws std::runtime_error naming the refused global or opcode.
Ref unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage);

}  // namespace sdtorch::pickle
