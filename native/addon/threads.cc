#include "addon/threads.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace sdtorch::addon {
namespace {

// omp_set_dynamic of the OpenMP runtime libtorch already loaded (libgomp for pip and libtorch
// builds, libiomp5 or libomp in others), never a second runtime of our own.
using SetDynamic = void (*)(int);
SetDynamic omp_set_dynamic_fn() {
  static const SetDynamic fn = [] {
    if (void* f = dlsym(RTLD_DEFAULT, "omp_set_dynamic")) return reinterpret_cast<SetDynamic>(f);
    for (const char* lib : {"libgomp.so.1", "libiomp5.so", "libomp.so"})
      if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD))
        if (void* f = dlsym(h, "omp_set_dynamic")) return reinterpret_cast<SetDynamic>(f);
    return SetDynamic(nullptr);  // a libtorch without OpenMP: nothing to pin
  }();
  return fn;
}

// A FIFO of jobs and the one thread that runs them; never destroyed (Node may exit with it waiting).
class ComputeThread {
 public:
  ComputeThread() : thread_([this] { loop(); }) { thread_.detach(); }

  void run(const std::function<void()>& work) {
    std::packaged_task<void()> job(work);
    auto done = job.get_future();
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
    done.get();  // rethrows the job's exception
  }

 private:
  void loop() {
    pin_this_thread();
    for (;;) {
      std::packaged_task<void()> job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> jobs_;
  std::thread thread_;
};

}  // namespace

void run_on_compute_thread(const std::function<void()>& work) {
  static auto* compute = new ComputeThread();
  compute->run(work);
}

// Kernels split their work by the thread count (a reduction summed in 2 parts differs in the last
// bits from one summed in 1), so the count must not follow the machine's load. Two runtimes would
// let it: libgomp's dynamic mode (OMP_DYNAMIC=true) sizes each team by the CPUs minus the 15-minute
// load average, and MKL's dynamic mode (on by default; libtorch turns it off only inside
// at::set_num_threads, which nothing called) may use fewer threads than asked.
void pin_thread_counts() {
  at::set_num_threads(at::get_num_threads());  // every thread's lazy init now sets this count; MKL dynamic off
  pin_this_thread();
}

void pin_this_thread() {
  if (SetDynamic f = omp_set_dynamic_fn()) f(0);
}

}  // namespace sdtorch::addon
