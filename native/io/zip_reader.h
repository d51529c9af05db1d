// Locates the stored (uncompressed) entries of a zip archive inside a memory map, ZIP64 included,
// which is how torch.save lays out checkpoints.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace sdtorch {

struct ZipEntry {
  uint64_t offset = 0;  // of the data, from the start of the file
  uint64_t size = 0;
  uint16_t method = 0;  // 0 = stored
};

// Throws std::runtime_error("damaged ...") when the directory is inconsistent with the file.
std::map<std::string, ZipEntry> read_zip_directory(const uint8_t* data, uint64_t size);

}  // namespace sdtorch
