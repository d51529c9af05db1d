#pragma once
#include <napi.h>

#include <memory>

#include "models/stable_diffusion.h"

namespace sdtorch::addon {

// A loaded checkpoint (any family of the preset table). Each forward runs on a worker thread and returns a Promise; the
// worker holds the networks alive even if the JS object is disposed meanwhile.
class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Value Load(const Napi::CallbackInfo& info);  // ({ path, device, dtype }) -> Promise<NativeModel>
  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<StableDiffusion> model_;
  std::shared_ptr<StableDiffusion> live(Napi::Env env);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value EncodeText(const Napi::CallbackInfo& info);
  Napi::Value Unet(const Napi::CallbackInfo& info);
  Napi::Value VaeEncode(const Napi::CallbackInfo& info);
  Napi::Value VaeDecode(const Napi::CallbackInfo& info);
  Napi::Value MoveTo(const Napi::CallbackInfo& info);
  Napi::Value SetLoras(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

}  // namespace sdtorch::addon
