// A restricted unpickler for PyTorch checkpoints: it knows dicts, lists, tuples, sets, numbers,
// strings, tensors and storages, keeps a short allow-list of objects real checkpoints carry (numpy
// scalars, Lightning callbacks) as inert placeholders, and refuses every other global. Nothing from
// the file is imported or runs.
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
  // Global: a callable implemented here (OrderedDict, the tensor rebuilders). Inert: a reference to an
  // allowed global that is never imported or called. Object: what REDUCE / NEWOBJ on an Inert made,
  // a record of the call (name, arguments, BUILD state) from which nothing is computed.
  enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Set, Global, StorageType, Tensor, Inert, Object } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;                              // Str; Global, Inert, Object: "module.name"
  std::vector<Ref> items;                     // Tuple, List, Set; Object: the call's arguments
  std::vector<std::pair<Ref, Ref>> entries;   // Dict (insertion order)
  Ref state;                                  // Object: what BUILD gave it (null if none)
  at::ScalarType dtype = at::kFloat;          // StorageType
  at::Tensor tensor;                          // Tensor
};

// Returns the storage bytes of zip entry `key` as a 1-D tensor of `dtype` with `numel` elements.
using StorageLoader = std::function<at::Tensor(const std::string& key, at::ScalarType dtype, int64_t numel)>;

// Unpickles and hands the root to `use`; afterwards every value the pickle made is emptied, so
// reference cycles (which the memo allows) free their tensors and the file they map. Copy out what
// you keep (tensors are handles). Throws std::runtime_error naming the refused global or opcode.
void unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage, const std::function<void(const Ref& root)>& use);

}  // namespace sdtorch::pickle
