#pragma once
#include <napi.h>
#include <torch/torch.h>

namespace sdtorch::addon {

class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit GeneratorWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Randn(const Napi::CallbackInfo& info);
  at::Generator generator_;
};

}  // namespace sdtorch::addon
