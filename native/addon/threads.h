// Fixed thread counts, so the same inputs give the same bits whatever else the machine runs.
#pragma once

namespace sdtorch::addon {

// At module init: pins ATen's thread count to the one it chose (OMP_NUM_THREADS or the cores),
// which also turns MKL's dynamic mode off, and libgomp's dynamic mode off in this thread.
void pin_thread_counts();

// In each thread that runs kernels, once: libgomp keeps its dynamic mode per thread.
void pin_this_thread();

}  // namespace sdtorch::addon
