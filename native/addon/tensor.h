// The JS handle of an at::Tensor. All math lives in libtorch; this only converts arguments.
#pragma once
#include <napi.h>
#include <torch/torch.h>

namespace sdtorch::addon {

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object wrap(Napi::Env env, at::Tensor t);
  static at::Tensor& unwrap(const Napi::Value& v, const char* what);  // throws a TypeError if not a live Tensor
  static bool is(const Napi::Value& v);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;

 private:
  at::Tensor tensor_;
  int64_t accounted_ = 0;  // bytes reported to V8 as external memory
  void set(Napi::Env env, at::Tensor t);
  at::Tensor& live(Napi::Env env);

  static Napi::Value FromBuffer(const Napi::CallbackInfo& info);
  static Napi::Value Cat(const Napi::CallbackInfo& info);
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value ToBuffer(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Binary(const Napi::CallbackInfo& info);
  Napi::Value Unary(const Napi::CallbackInfo& info);
  Napi::Value Clamp(const Napi::CallbackInfo& info);
  Napi::Value Chunk(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value Permute(const Napi::CallbackInfo& info);
  Napi::Value Slice(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

// Argument helpers shared by the bindings.
at::ScalarType parse_dtype(const std::string& name);
std::string dtype_string(at::ScalarType t);
at::Device parse_device(const std::string& name);
std::vector<int64_t> parse_shape(const Napi::Value& v, const char* what);

}  // namespace sdtorch::addon
