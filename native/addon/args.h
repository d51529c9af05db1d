// Typed readers of the ONE options object each native call takes (sharp's AttrAs style). JS has
// validated the options already; these only copy them into C++ values, and a wrong type is a
// TypeError naming the call and the field.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>

#include "addon/tensor.h"

namespace sdtorch::addon {

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* call) : env_(info.Env()), where_(std::string(call) + "(): '") {
    if (info.Length() != 1 || !info[0].IsObject() || info[0].IsArray())
      throw Napi::TypeError::New(env_, std::string(call) + "(options): pass one options object");
    obj_ = info[0].As<Napi::Object>();
  }
  // An object inside the options (an element of an array option), read the same way; `what` names it
  // in messages: "setLoras(): 'loras[0]" gives "setLoras(): 'loras[0].path' is required".
  Args(Napi::Env env, const Napi::Value& v, const std::string& what) : env_(env), where_(what + ".") {
    if (!v.IsObject() || v.IsArray()) throw Napi::TypeError::New(env_, what + "' must be an object");
    obj_ = v.As<Napi::Object>();
  }

  bool has(const char* key) const {
    auto v = obj_.Get(key);
    return !v.IsUndefined() && !v.IsNull();
  }

  std::string string(const char* key) const {
    auto v = get(key);
    if (!v.IsString()) fail(key, "a string");
    return v.As<Napi::String>();
  }
  std::string string(const char* key, const std::string& fallback) const { return has(key) ? string(key) : fallback; }

  int64_t integer(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    auto v = get(key);
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) fail(key, "a number");
    return v.As<Napi::Number>().Int64Value();
  }

  double number(const char* key) const {
    auto v = get(key);
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) fail(key, "a finite number");
    return v.As<Napi::Number>().DoubleValue();
  }

  Napi::Array array(const char* key) const {
    auto v = get(key);
    if (!v.IsArray()) fail(key, "an array");
    return v.As<Napi::Array>();
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    auto v = get(key);
    if (!v.IsBoolean()) fail(key, "a boolean");
    return v.As<Napi::Boolean>().Value();
  }

  at::Tensor tensor(const char* key) const { return TensorWrap::unwrap(get(key), (where_.substr(0, where_.size() - 1) + key).c_str()); }
  std::optional<at::Tensor> optional_tensor(const char* key) const {
    if (!has(key)) return std::nullopt;
    return tensor(key);
  }

  at::Device device(const char* key) const { return parse_device(string(key)); }
  at::ScalarType dtype(const char* key) const { return parse_dtype(string(key)); }
  std::optional<at::ScalarType> optional_dtype(const char* key) const {
    if (!has(key)) return std::nullopt;
    return dtype(key);
  }

  // A plain object of strings (e.g. safetensors metadata); other values are converted with String().
  std::map<std::string, std::string> strings(const char* key) const {
    std::map<std::string, std::string> out;
    if (!has(key)) return out;
    auto v = get(key);
    if (!v.IsObject()) fail(key, "an object of strings");
    auto o = v.As<Napi::Object>();
    auto keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).As<Napi::String>();
      out[k] = o.Get(k).ToString().Utf8Value();
    }
    return out;
  }

  Napi::Object object(const char* key) const {
    auto v = get(key);
    if (!v.IsObject()) fail(key, "an object");
    return v.As<Napi::Object>();
  }

 private:
  Napi::Value get(const char* key) const {
    auto v = obj_.Get(key);
    if (v.IsUndefined()) throw Napi::TypeError::New(env_, where_ + key + "' is required");
    return v;
  }
  [[noreturn]] void fail(const char* key, const char* type) const {
    throw Napi::TypeError::New(env_, where_ + key + "' must be " + type);
  }
  Napi::Env env_;
  std::string where_;  // "call(): '" or "call(): 'list[i].": what messages start with
  Napi::Object obj_;
};

}  // namespace sdtorch::addon
