// The JS classes of one Node environment. The addon is loaded once per process but initialized once
// per environment (the main thread's, each worker thread's): a constructor kept in a static would be
// another environment's (a crash: "Cannot create a handle without a HandleScope") or a dead one's.
#pragma once
#include <napi.h>

namespace sdtorch::addon {

struct Classes {
  Napi::FunctionReference tensor, model, taesd;
};

// This environment's classes (napi instance data, freed with the environment).
inline Classes& classes(Napi::Env env) { return *env.GetInstanceData<Classes>(); }

}  // namespace sdtorch::addon
