// A read-only memory map that tensors can alias: each tensor's deleter holds the map alive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sdtorch {

struct MappedFile {
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  ~MappedFile();
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // Whether [p, p + n) lies inside one live map (pages there can be dropped: the file has them).
  static bool maps(const void* p, size_t n);
};

}  // namespace sdtorch
