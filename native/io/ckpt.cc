#include "io/ckpt.h"

#include <stdexcept>

#include "io/unpickler.h"
#include "io/zip_reader.h"

namespace sdtorch {
namespace {

void flatten(const pickle::Ref& dict, TensorFile& out) {
  for (const auto& [k, v] : dict->entries)
    if (k->kind == pickle::Value::Str && v->kind == pickle::Value::Tensor) out.tensors.emplace_back(k->s, v->tensor);
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
  pickle::Ref root;
  try {
    root = pickle::unpickle(file->data + pkl->second.offset, pkl->second.size, load_storage);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (msg.rfind("refused", 0) == 0) throw std::runtime_error("'" + path + "': " + msg);
    if (msg.find("is damaged") != std::string::npos) throw;
    damaged(path, msg);
  }
  TensorFile out;
  out.format = "ckpt";
  if (root->kind != pickle::Value::Dict) throw std::runtime_error("'" + path + "' does not hold a dict of tensors");
  // Lightning-style checkpoints nest the weights under "state_dict".
  for (const auto& [k, v] : root->entries)
    if (k->kind == pickle::Value::Str && k->s == "state_dict" && v->kind == pickle::Value::Dict) {
      flatten(v, out);
      return out;
    }
  flatten(root, out);
  return out;
}

}  // namespace sdtorch
