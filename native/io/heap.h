// The process heap (glibc): when freed tensor memory goes back to the system.
#pragma once

namespace sdtorch {

// Hands free heap memory back to the system (malloc_trim(0): every arena, free chunks inside the heap
// too). Cheap next to a network's call; used where the working set changes: a model disposed, a LoRA
// merged, before the VAE decode (its activations are larger than the UNet's, and would otherwise
// come on top of the sampling loop's freed ones).
void trim_heap();

}  // namespace sdtorch
