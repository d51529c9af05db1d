#pragma once
#include <napi.h>

#include <memory>

#include "models/taesd.h"

namespace sdtorch::addon {

// A loaded TAESD (models/taesd.h): its own object, apart from any checkpoint; encode/decode run on
// a worker thread and return Promises, and the worker holds the network alive through a dispose.
class TaesdWrap : public Napi::ObjectWrap<TaesdWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Value Load(const Napi::CallbackInfo& info);  // ({ paths, device, dtype }) -> Promise<NativeTaesd>
  explicit TaesdWrap(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<TaesdImpl> taesd_;
  std::shared_ptr<TaesdImpl> live(Napi::Env env);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Encode(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

}  // namespace sdtorch::addon
