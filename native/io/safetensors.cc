#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "io/json.h"

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

// A non-negative integer that fits a tensor size or byte offset exactly (JSON numbers are doubles).
bool is_count(const json::Value& v) {
  return v.kind == json::Value::Number && v.number >= 0 && v.number <= 9007199254740992.0 && v.number == double(uint64_t(v.number));
}

}  // namespace

TensorFile read_safetensors(const std::shared_ptr<MappedFile>& file, bool header_only) {
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
    if (!header_only) out.tensors.emplace_back(key, view_of(file, base + begin, dims, dtype));
  }
  return out;
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
