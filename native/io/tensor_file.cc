#include "io/tensor_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "io/ckpt.h"
#include "io/safetensors.h"

namespace sdtorch {

// A CPU tensor over bytes of the map; the deleter keeps the map alive as long as any view is.
at::Tensor view_of(const std::shared_ptr<MappedFile>& file, uint64_t offset, at::IntArrayRef shape, at::ScalarType dtype) {
  void* ptr = const_cast<uint8_t*>(file->data + offset);
  return torch::from_blob(ptr, shape, [file](void*) {}, at::TensorOptions().dtype(dtype));
}

namespace {

// madvise over the whole pages inside `t`'s bytes (pages shared with a neighbour are left alone).
void advise_pages(const at::Tensor& t, int advice) {
  if (!t.defined() || !t.device().is_cpu() || !t.is_contiguous() || t.nbytes() == 0) return;
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr()), end = begin + t.nbytes();
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (first < last) madvise(reinterpret_cast<void*>(first), last - first, advice);
}

bool in_map(const at::Tensor& t) { return t.defined() && t.device().is_cpu() && MappedFile::maps(t.data_ptr(), t.nbytes()); }

}  // namespace

// The map is private and never written, so dropped pages come back from the file unchanged. Only a
// map's pages: anonymous memory would read back as zeros.
void release_pages(const at::Tensor& view) {
  if (in_map(view)) advise_pages(view, MADV_DONTNEED);
}

void reclaim_pages(const at::Tensor& tensor) {
  // A map's pages only leave this process (cheap; the page cache keeps them for a LoRA or a move).
  if (in_map(tensor)) return advise_pages(tensor, MADV_DONTNEED);
#ifdef MADV_PAGEOUT
  advise_pages(tensor, MADV_PAGEOUT);
#endif
}

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

[[noreturn]] void damaged(const std::string& path, const std::string& why) {
  throw std::runtime_error("'" + path + "' is damaged: " + why + ". Download or copy it again.");
}

namespace {

// A header length that fits the file, then JSON whitespace and '{': a safetensors file whose header
// does not start with '{' as the format requires (Python's safetensors reads it anyway).
bool looks_like_safetensors(const MappedFile& f) {
  uint64_t n = 0;
  std::memcpy(&n, f.data, 8);
  if (n < 2 || n > f.size - 8) return false;
  for (const uint8_t* p = f.data + 8; p < f.data + 8 + n; ++p)
    if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') return *p == '{';
  return false;
}

}  // namespace

TensorFile load_tensor_file(const std::string& path, bool header_only) {
  auto file = MappedFile::open(path);
  const char* supported = "expected .safetensors or a PyTorch zip checkpoint (.ckpt/.pt/.pth)";
  if (file->size < 8)
    throw std::runtime_error("'" + path + "' is not a supported checkpoint: it is only " + std::to_string(file->size) +
                             " bytes long; " + supported);
  const uint8_t* d = file->data;
  if (d[0] == 'P' && d[1] == 'K' && d[2] == 3 && d[3] == 4) return header_only ? TensorFile{{}, {}, "ckpt"} : read_ckpt(file);
  if (file->size > 9 && d[8] == '{') return read_safetensors(file, header_only);
  if (d[0] == 0x80 && d[1] <= 5)
    throw std::runtime_error("'" + path + "' is a legacy (pre-zip) PyTorch pickle, which is not supported; " +
                             "re-save it with a current torch.save or convert it to .safetensors");
  if (looks_like_safetensors(*file)) return read_safetensors(file, header_only);  // it says what is wrong
  throw std::runtime_error("'" + path + "' is not a supported checkpoint: " + supported);
}

}  // namespace sdtorch
