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
};

}  // namespace sdtorch
