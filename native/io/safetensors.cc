#include "io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <tuple>

#include "io/json.h"

namespace sdtorch {
namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // safetensors' MAX_HEADER_SIZE

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

// A non-negative integer that fits a tensor size or byte offset exactly (JSON numbers are doubles),
// written as an integer (Python's safetensors refuses 8.0 for a size).
bool is_count(const json::Value& v) {
  return v.kind == json::Value::Number && v.integer && v.number >= 0 && v.number <= 9007199254740992.0 &&
         v.number == double(uint64_t(v.number));
}

// serde_json, which Python's safetensors parses headers with, refuses anything but UTF-8.
bool is_utf8(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (!len || n - i < len) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // overlong forms, UTF-16 surrogates, beyond U+10FFFF
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xD800 && cp < 0xE000) ||
        cp > 0x10FFFF)
      return false;
    i += len;
  }
  return true;
}

std::string range(uint64_t begin, uint64_t end) { return "bytes " + std::to_string(begin) + ".." + std::to_string(end); }

}  // namespace

// The format's rules, as Python's safetensors (safetensors/src/tensor.rs, read_metadata and
// validate) enforces them: a header of at most 100,000,000 bytes, UTF-8 JSON starting with '{',
// string-only __metadata__, each name once, and byte ranges that tile the data section exactly:
// sorted by offset the first starts at 0, each starts where the one before ends, the last ends at
// the end of the file. Anything else could be a polyglot file, or two names sharing bytes.
TensorFile read_safetensors(const std::shared_ptr<MappedFile>& file, bool header_only) {
  const std::string& path = file->path;
  uint64_t n = 0;
  std::memcpy(&n, file->data, 8);
  if (n > kMaxHeaderSize)
    damaged(path, "its header claims " + std::to_string(n) + " bytes, more than the " + std::to_string(kMaxHeaderSize) +
                      " a safetensors header may have");
  if (n > file->size - 8) damaged(path, "its header is cut off (the file is truncated)");
  const uint8_t* head = file->data + 8;
  if (n == 0 || head[0] != '{')
    damaged(path, std::string("its header starts with ") + (n && std::isspace(head[0]) ? "whitespace" : "something else") +
                      " where the safetensors format requires '{'");
  if (!is_utf8(head, n)) damaged(path, "its header is not valid UTF-8");
  json::Value header;
  try {
    header = json::parse(reinterpret_cast<const char*>(head), n);
  } catch (const std::exception& e) {
    damaged(path, e.what());
  }
  if (header.kind != json::Value::Object) damaged(path, "its header is not a JSON object");
  const uint64_t base = 8 + n, data_size = file->size - base;
  TensorFile out;
  out.format = "safetensors";
  struct Span {
    uint64_t begin, end;
    const std::string* key;
  };
  std::vector<Span> spans;
  std::set<std::string> names;
  for (const auto& [key, info] : header.members) {
    if (!names.insert(key).second) damaged(path, "its header names '" + key + "' twice");
    if (key == "__metadata__") {
      if (info.kind != json::Value::Object) damaged(path, "its __metadata__ is not a JSON object of strings");
      for (const auto& [mk, mv] : info.members) {
        if (mv.kind != json::Value::String)
          damaged(path, "its __metadata__ value '" + mk + "' is not a string (safetensors metadata holds only strings)");
        out.metadata[mk] = mv.str;  // a key given twice keeps its last value, as in Python
      }
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
      if (!is_count(s)) damaged(path, "tensor '" + key + "' has a bad shape (sizes must be non-negative integers)");
      dims.push_back(int64_t(s.number));
      overflow |= __builtin_mul_overflow(numel, uint64_t(s.number), &numel);
    }
    overflow |= __builtin_mul_overflow(numel, uint64_t(c10::elementSize(dtype)), &nbytes);
    if (!is_count(offs->items[0]) || !is_count(offs->items[1]))
      damaged(path, "tensor '" + key + "' has bad data_offsets (two non-negative integers)");
    uint64_t begin = uint64_t(offs->items[0].number), end = uint64_t(offs->items[1].number);
    if (overflow || end < begin || end - begin != nbytes)
      damaged(path, "tensor '" + key + "' has a size that does not match its shape");
    if (end > data_size)
      damaged(path, "tensor '" + key + "' lies beyond the end of the file (the file is truncated: " +
                        std::to_string(file->size) + " bytes, needs " + std::to_string(base + end) + ")");
    spans.push_back({begin, end, &key});
    if (!header_only) out.tensors.emplace_back(key, view_of(file, base + begin, dims, dtype));
  }
  // The tensors stay in header order; the tiling is checked in offset order.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  const Span* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin < covered)
      damaged(path, "tensor '" + *s.key + "' (" + range(s.begin, s.end) + ") overlaps tensor '" + *prev->key + "' (" +
                        range(prev->begin, prev->end) + "); safetensors tensors may not share bytes");
    if (s.begin > covered)
      damaged(path, "no tensor covers " + range(covered, s.begin) + " of its data, before tensor '" + *s.key +
                        "'; safetensors tensors must follow one another from byte 0 without gaps");
    covered = s.end;
    prev = &s;
  }
  if (covered != data_size)
    damaged(path, std::to_string(data_size - covered) + " bytes after the last tensor's data belong to no tensor (" +
                      range(covered, data_size) + " of the data); a safetensors file ends where its last tensor ends");
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
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t0] = tensors[i];
    if (name == "__metadata__") throw std::runtime_error("a tensor cannot be named '__metadata__' in a safetensors file");
    at::Tensor t = t0.to(at::kCPU).contiguous();
    uint64_t bytes = t.nbytes();
    header += (header.size() > 1 ? "," : "") + json::quote(name) + ":{\"dtype\":\"" + dtype_name(t.scalar_type()) + "\",\"shape\":[";
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
