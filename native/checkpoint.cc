#include "checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "io/json.h"
#include "io/mapped_file.h"
#include "io/unpickler.h"
#include "io/zip_reader.h"

namespace sdtorch {
namespace {

const std::pair<const char*, at::ScalarType> kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16}, {"I64", at::kLong},
    {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},  {"U8", at::kByte},       {"BOOL", at::kBool},
};

at::ScalarType dtype_from_name(const std::string& name, const std::string& path, const std::string& key) {
  for (auto& [n, t] : kDtypes)
    if (name == n) return t;
  throw std::runtime_error("'" + path + "': tensor '" + key + "' has dtype " + name +
                           ", which is not supported (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL are)");
}

const char* dtype_name(at::ScalarType t) {
  for (auto& [n, s] : kDtypes)
    if (s == t) return n;
  throw std::runtime_error(std::string("cannot save dtype ") + c10::toString(t) + " to safetensors");
}

// A CPU tensor over bytes of the map; the deleter keeps the map alive as long as any view is.
at::Tensor view_of(const std::shared_ptr<MappedFile>& file, uint64_t offset, at::IntArrayRef shape, at::ScalarType dtype) {
  void* ptr = const_cast<uint8_t*>(file->data + offset);
  return torch::from_blob(ptr, shape, [file](void*) {}, at::TensorOptions().dtype(dtype));
}

// A non-negative integer that fits a tensor size or byte offset exactly (JSON numbers are doubles).
bool is_count(const json::Value& v) {
  return v.kind == json::Value::Number && v.number >= 0 && v.number <= 9007199254740992.0 && v.number == double(uint64_t(v.number));
}

[[noreturn]] void damaged(const std::string& path, const std::string& why) {
  throw std::runtime_error("'" + path + "' is damaged: " + why + ". Download or copy it again.");
}

TensorFile read_safetensors(const std::shared_ptr<MappedFile>& file) {
  const std::string& path = file->path;
  uint64_t n = 0;
  std::memcpy(&n, file->data, 8);
  if (n > file->size - 8) damaged(path, "its header is cut off (the file is truncated)");
  json::Value header;
  try {
    header = json::parse(reinterpret_cast<const char*>(file->data + 8), n);
  } catch (const std::exception& e) {
    damaged(path, e.what());
  }
  if (header.kind != json::Value::Object) damaged(path, "its header is not a JSON object");
  const uint64_t base = 8 + n, data_size = file->size - base;
  TensorFile out;
  out.format = "safetensors";
  for (const auto& [key, info] : header.members) {
    if (key == "__metadata__") {
      for (const auto& [mk, mv] : info.members)
        if (mv.kind == json::Value::String) out.metadata[mk] = mv.str;
      continue;
    }
    const json::Value *dt = info.find("dtype"), *shape = info.find("shape"), *offs = info.find("data_offsets");
    if (!dt || !shape || !offs || dt->kind != json::Value::String || shape->kind != json::Value::Array ||
        offs->kind != json::Value::Array || offs->items.size() != 2)
      damaged(path, "header entry '" + key + "' is malformed");
    at::ScalarType dtype = dtype_from_name(dt->str, path, key);
    std::vector<int64_t> dims;
    uint64_t numel = 1, nbytes = 0;
    bool overflow = false;
    for (auto& s : shape->items) {
      if (!is_count(s)) damaged(path, "tensor '" + key + "' has a bad shape");
      dims.push_back(int64_t(s.number));
      overflow |= __builtin_mul_overflow(numel, uint64_t(s.number), &numel);
    }
    overflow |= __builtin_mul_overflow(numel, uint64_t(c10::elementSize(dtype)), &nbytes);
    if (!is_count(offs->items[0]) || !is_count(offs->items[1]))
      damaged(path, "tensor '" + key + "' has bad data_offsets");
    uint64_t begin = uint64_t(offs->items[0].number), end = uint64_t(offs->items[1].number);
    if (overflow || end < begin || end - begin != nbytes)
      damaged(path, "tensor '" + key + "' has a size that does not match its shape");
    if (end > data_size)
      damaged(path, "tensor '" + key + "' lies beyond the end of the file (the file is truncated: " +
                        std::to_string(file->size) + " bytes, needs " + std::to_string(base + end) + ")");
    out.tensors.emplace_back(key, view_of(file, base + begin, dims, dtype));
  }
  return out;
}

void flatten(const pickle::Ref& dict, TensorFile& out) {
  for (const auto& [k, v] : dict->entries)
    if (k->kind == pickle::Value::Str && v->kind == pickle::Value::Tensor) out.tensors.emplace_back(k->s, v->tensor);
}

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

}  // namespace

TensorFile load_tensor_file(const std::string& path) {
  auto file = MappedFile::open(path);
  const char* supported = "expected .safetensors or a PyTorch zip checkpoint (.ckpt/.pt/.pth)";
  if (file->size < 8)
    throw std::runtime_error("'" + path + "' is not a supported checkpoint: it is only " + std::to_string(file->size) +
                             " bytes long; " + supported);
  const uint8_t* d = file->data;
  if (d[0] == 'P' && d[1] == 'K' && d[2] == 3 && d[3] == 4) return read_ckpt(file);
  if (file->size > 9 && d[8] == '{') return read_safetensors(file);
  if (d[0] == 0x80 && d[1] <= 5)
    throw std::runtime_error("'" + path + "' is a legacy (pre-zip) PyTorch pickle, which is not supported; " +
                             "re-save it with a current torch.save or convert it to .safetensors");
  throw std::runtime_error("'" + path + "' is not a supported checkpoint: " + supported);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata, bool overwrite) {
  namespace fs = std::filesystem;
  if (!overwrite && fs::exists(path))
    throw std::runtime_error("'" + path + "' already exists; pass { overwrite: true } to replace it");
  std::vector<at::Tensor> data;
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "" : ",") + json::quote(k) + ":" + json::quote(v);
      first = false;
    }
    header += "},";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t0] = tensors[i];
    if (name == "__metadata__") throw std::runtime_error("a tensor cannot be named '__metadata__' in a safetensors file");
    at::Tensor t = t0.to(at::kCPU).contiguous();
    uint64_t bytes = t.nbytes();
    header += (i ? "," : "") + json::quote(name) + ":{\"dtype\":\"" + dtype_name(t.scalar_type()) + "\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); ++d) header += (d ? "," : "") + std::to_string(t.size(d));
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    data.push_back(t);
  }
  header += "}";
  while (header.size() % 8) header += ' ';  // keeps the data aligned for zero-copy readers

  // Write beside the target, then rename: readers never see a half-written file. The name is unique
  // per call, so concurrent saves to one path never share a temp file.
  static std::atomic<uint64_t> serial{0};
  std::string tmp = path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
  uint64_t n = header.size();
  bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(header.data(), 1, n, f) == n;
  for (const auto& t : data)
    if (ok && t.nbytes()) ok = std::fwrite(t.data_ptr(), 1, t.nbytes(), f) == t.nbytes();
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error("writing '" + path + "' failed: " + std::strerror(errno));
  }
  if (!overwrite) {
    // link() fails if the target exists, atomically: no other save can slip in between.
    if (link(tmp.c_str(), path.c_str()) == 0) {
      std::remove(tmp.c_str());
      return;
    }
    if (errno == EEXIST || fs::exists(path)) {
      std::remove(tmp.c_str());
      throw std::runtime_error("'" + path + "' already exists; pass { overwrite: true } to replace it");
    }
    // a file system without hard links: fall through to rename
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot move the written file to '" + path + "': " + std::strerror(errno));
  }
}

}  // namespace sdtorch
