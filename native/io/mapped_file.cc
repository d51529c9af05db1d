#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

namespace sdtorch {

namespace {
std::mutex live_mutex;
std::map<uintptr_t, size_t> live;  // start -> size of every map
}  // namespace

MappedFile::~MappedFile() {
  if (!data || !size) return;
  {
    std::lock_guard<std::mutex> lock(live_mutex);
    live.erase(reinterpret_cast<uintptr_t>(data));
  }
  munmap(const_cast<uint8_t*>(data), size);
}

bool MappedFile::maps(const void* p, size_t n) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(live_mutex);
  auto it = live.upper_bound(begin);
  if (it == live.begin()) return false;
  --it;
  return begin + n <= it->first + it->second;
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error("'" + path + "' is not a regular file");
  }
  auto f = std::make_shared<MappedFile>();
  f->path = path;
  f->size = static_cast<size_t>(st.st_size);
  if (f->size > 0) {
    // MAP_PRIVATE + PROT_WRITE: an accidental in-place op copies the page instead of faulting
    // or writing through to the user's file.
    void* p = mmap(nullptr, f->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw std::runtime_error("cannot map '" + path + "': " + std::strerror(errno));
    }
    f->data = static_cast<const uint8_t*>(p);
    std::lock_guard<std::mutex> lock(live_mutex);
    live[reinterpret_cast<uintptr_t>(p)] = f->size;
  }
  ::close(fd);
  return f;
}

}  // namespace sdtorch
