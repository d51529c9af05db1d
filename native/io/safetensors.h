// .safetensors: read memory-mapped (zero copy), written atomically.
#pragma once
#include "io/tensor_file.h"

namespace sdtorch {

// header_only: checks the header and returns its metadata, no tensors.
TensorFile read_safetensors(const std::shared_ptr<MappedFile>& file, bool header_only = false);

// Writes atomically (temp file + rename). Refuses to replace an existing file unless overwrite.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata, bool overwrite);

}  // namespace sdtorch
