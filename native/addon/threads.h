// The threads that run kernels: fixed thread counts, so the same inputs give the same bits whatever
// else the machine runs, and one thread for all the addon's work.
#pragma once
#include <functional>

namespace sdtorch::addon {

// At module init: pins ATen's thread count to the one it chose (OMP_NUM_THREADS or the cores),
// which also turns MKL's dynamic mode off, and libgomp's dynamic mode off in this thread.
void pin_thread_counts();

// In each thread that runs kernels (the init thread, the compute thread): libgomp keeps its dynamic mode per thread.
void pin_this_thread();

// Runs `work` on the addon's one compute thread and waits for it (an exception comes back to the
// caller). Every async call's work runs there rather than on whichever libuv worker thread is free:
// glibc gives each thread its own malloc arena, and each arena kept the freed activations of the
// steps it ran (a 512x512 image grew ~200 MB a step for the first four steps, one per worker
// thread). The calls are serialized, as the kernels already use every core.
void run_on_compute_thread(const std::function<void()>& work);

}  // namespace sdtorch::addon
