// PyTorch zip checkpoints (.ckpt/.pt/.pth, torch.save): data.pkl read with a restricted
// unpickler that never runs code; storages are views of the memory-mapped file.
#pragma once
#include "io/tensor_file.h"

namespace sdtorch {

TensorFile read_ckpt(const std::shared_ptr<MappedFile>& file);

}  // namespace sdtorch
