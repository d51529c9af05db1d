#include "io/ckpt.h"

#include <set>
#include <stdexcept>

#include "io/unpickler.h"
#include "io/zip_reader.h"

namespace sdtorch {
namespace {

// The value of a string key as Python's dict holds it: a key set twice keeps its first place and
// its last value.
std::vector<std::pair<std::string, pickle::Ref>> str_items(const pickle::Ref& dict) {
  std::vector<std::pair<std::string, pickle::Ref>> out;
  std::map<std::string, size_t> at;
  for (const auto& [k, v] : dict->entries) {
    if (k->kind != pickle::Value::Str) continue;
    auto [it, fresh] = at.emplace(k->s, out.size());
    if (fresh) out.emplace_back(k->s, v);
    else out[it->second].second = v;
  }
  return out;
}

// Tensors of a dict by name; tensors in nested dicts (and in the state of inert objects such as a
// ParameterDict) as "outer.inner" (A1111's embedding .pt keeps its vectors under
// string_to_param['*']). A dict met again (the memo allows cycles) or 8 levels down ends the walk.
void flatten(const pickle::Ref& dict, TensorFile& out, const std::string& prefix = "", std::set<const pickle::Value*>* seen = nullptr, int depth = 0) {
  std::set<const pickle::Value*> own;
  if (!seen) seen = &own;
  if (depth > 8 || !seen->insert(dict.get()).second) return;
  for (const auto& [k, v] : str_items(dict)) {
    if (v->kind == pickle::Value::Tensor) out.tensors.emplace_back(prefix + k, v->tensor);
    else if (v->kind == pickle::Value::Dict) flatten(v, out, prefix + k + ".", seen, depth + 1);
    else if (v->kind == pickle::Value::Object && v->state && v->state->kind == pickle::Value::Dict)
      flatten(v->state, out, prefix + k + ".", seen, depth + 1);
  }
}

// The dict under key "state_dict", or null.
pickle::Ref state_dict_of(const pickle::Ref& dict) {
  for (const auto& [k, v] : str_items(dict))
    if (k == "state_dict") return v->kind == pickle::Value::Dict ? v : nullptr;
  return nullptr;
}

// Lightning-style checkpoints nest the weights under "state_dict", some of them twice: unwrap as
// diffusers does, while the dict holds a "state_dict" dict. A pickle can make a dict its own
// "state_dict" (the memo allows cycles), so a dict seen before ends the walk.
pickle::Ref weights_of(const pickle::Ref& root) {
  pickle::Ref dict = root;
  std::set<const pickle::Value*> seen{dict.get()};
  while (pickle::Ref inner = state_dict_of(dict)) {
    if (!seen.insert(inner.get()).second) break;
    dict = inner;
  }
  return dict;
}

}  // namespace

TensorFile read_ckpt(const std::shared_ptr<MappedFile>& file) {
  const std::string& path = file->path;
  std::map<std::string, ZipEntry> entries;
  try {
    entries = read_zip_directory(file->data, file->size);
  } catch (const std::exception& e) {
    damaged(path, e.what());
  }
  std::string prefix;
  for (const auto& [name, e] : entries)
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "data.pkl") == 0) {
      prefix = name.substr(0, name.size() - 8);
      break;
    }
  auto pkl = entries.find(prefix + "data.pkl");
  if (pkl == entries.end())
    throw std::runtime_error("'" + path + "' is a zip archive but not a PyTorch checkpoint (no data.pkl)");
  auto bo = entries.find(prefix + "byteorder");
  if (bo != entries.end() && std::string(reinterpret_cast<const char*>(file->data + bo->second.offset), bo->second.size) != "little")
    throw std::runtime_error("'" + path + "' stores big-endian tensors, which are not supported");
  auto stored = [&](const ZipEntry& e, const std::string& name) {
    if (e.method != 0) damaged(path, "entry '" + name + "' is compressed, which torch.save never does");
  };
  stored(pkl->second, "data.pkl");
  auto load_storage = [&](const std::string& key, at::ScalarType dtype, int64_t numel) {
    auto it = entries.find(prefix + "data/" + key);
    if (it == entries.end()) damaged(path, "storage '" + key + "' is missing");
    stored(it->second, key);
    if (numel < 0 || uint64_t(numel) > it->second.size / c10::elementSize(dtype))
      damaged(path, "storage '" + key + "' is shorter than its tensors need");
    return view_of(file, it->second.offset, {numel}, dtype);
  };
  TensorFile out;
  out.format = "ckpt";
  bool is_dict = false;
  try {
    pickle::unpickle(file->data + pkl->second.offset, pkl->second.size, load_storage, [&](const pickle::Ref& root) {
      if (!(is_dict = root->kind == pickle::Value::Dict)) return;
      flatten(weights_of(root), out);
      // Lightning's training step: diffusers tells SD 2.x 512 (875000) from 768-v by it.
      for (const auto& [k, v] : str_items(root))
        if (k == "global_step" && v->kind == pickle::Value::Int) out.metadata["global_step"] = std::to_string(v->i);
    });
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (msg.rfind("refused", 0) == 0) throw std::runtime_error("'" + path + "': " + msg);
    if (msg.find("is damaged") != std::string::npos) throw;
    damaged(path, msg);
  }
  if (!is_dict) throw std::runtime_error("'" + path + "' does not hold a dict of tensors");
  return out;
}

}  // namespace sdtorch
