#include "addon/tensor.h"

#include <cstring>

#include "addon/classes.h"
#include "addon/guard.h"

namespace sdtorch::addon {

namespace {

const std::pair<const char*, at::ScalarType> kDtypes[] = {
    {"float32", at::kFloat}, {"float16", at::kHalf},  {"bfloat16", at::kBFloat16}, {"float64", at::kDouble},
    {"int64", at::kLong},    {"int32", at::kInt},     {"int16", at::kShort},       {"int8", at::kChar},
    {"uint8", at::kByte},    {"bool", at::kBool},
};

// The element type a typed array carries, or Undefined for raw 16-bit words (float16/bfloat16 bits).
at::ScalarType typed_array_dtype(napi_typedarray_type t, at::ScalarType wanted) {
  switch (t) {
    case napi_float32_array: return at::kFloat;
    case napi_float64_array: return at::kDouble;
    case napi_int32_array: return at::kInt;
    case napi_bigint64_array: return at::kLong;
    case napi_uint8_array: case napi_uint8_clamped_array: return at::kByte;  // to(kBool) maps nonzero to true
    case napi_int8_array: return at::kChar;
    case napi_int16_array: return at::kShort;
    case napi_uint16_array:
      if (wanted == at::kHalf || wanted == at::kBFloat16) return wanted;
      [[fallthrough]];
    default: throw std::invalid_argument("unsupported typed array for Tensor.from; use Float32Array, Int32Array, BigInt64Array or Uint8Array");
  }
}

}  // namespace

at::ScalarType parse_dtype(const std::string& name) {
  for (auto& [n, t] : kDtypes)
    if (name == n) return t;
  throw std::invalid_argument("unknown dtype '" + name + "'; use float32, float16, bfloat16, int64, int32 or uint8");
}

std::string dtype_string(at::ScalarType t) {
  for (auto& [n, s] : kDtypes)
    if (s == t) return n;
  return c10::toString(t);
}

at::Device parse_device(const std::string& name) {
  at::Device device(at::kCPU);
  try {
    device = at::Device(name);
  } catch (const std::exception&) {
    throw std::invalid_argument("unknown device '" + name + "'; use 'cpu', 'cuda' or 'cuda:N'");
  }
  if (device.is_cpu()) return device;
  if (!device.is_cuda()) throw std::invalid_argument("unsupported device '" + name + "'; use 'cpu', 'cuda' or 'cuda:N'");
  if (!torch::cuda::is_available())
    throw std::invalid_argument("device '" + name + "' was requested but CUDA is not available (this binary or machine has no usable GPU); use 'cpu'");
  const int64_t count = int64_t(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count)
    throw std::invalid_argument("device '" + name + "' does not exist: this machine has " + std::to_string(count) +
                                " CUDA device(s), 'cuda:0' to 'cuda:" + std::to_string(count - 1) + "'");
  return device;
}

std::vector<int64_t> parse_shape(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw std::invalid_argument(std::string(what) + " must be an array of non-negative integers");
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (d < 0 || d != double(int64_t(d))) throw std::invalid_argument(std::string(what) + " must be an array of non-negative integers");
    out.push_back(int64_t(d));
  }
  return out;
}

void TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeTensor",
      {StaticMethod("fromBuffer", &TensorWrap::FromBuffer), StaticMethod("cat", &TensorWrap::Cat),
       InstanceAccessor("shape", &TensorWrap::Shape, nullptr), InstanceAccessor("dtype", &TensorWrap::Dtype, nullptr),
       InstanceAccessor("device", &TensorWrap::Device, nullptr), InstanceAccessor("disposed", &TensorWrap::Disposed, nullptr),
       InstanceMethod("toBuffer", &TensorWrap::ToBuffer), InstanceMethod("to", &TensorWrap::To),
       InstanceMethod("binary", &TensorWrap::Binary), InstanceMethod("unary", &TensorWrap::Unary),
       InstanceMethod("clamp", &TensorWrap::Clamp), InstanceMethod("chunk", &TensorWrap::Chunk),
       InstanceMethod("reshape", &TensorWrap::Reshape), InstanceMethod("permute", &TensorWrap::Permute),
       InstanceMethod("slice", &TensorWrap::Slice), InstanceMethod("dispose", &TensorWrap::Dispose)});
  classes(env).tensor = Napi::Persistent(cls);
  exports.Set("NativeTensor", cls);
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeTensor is created by sdtorch; use Tensor.from(data, shape)");
  set(info.Env(), *info[0].As<Napi::External<at::Tensor>>().Data());
}

TensorWrap::~TensorWrap() {
  if (accounted_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -accounted_);
}

void TensorWrap::set(Napi::Env env, at::Tensor t) {
  int64_t bytes = t.defined() && t.is_cpu() ? int64_t(t.nbytes()) : 0;
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes - accounted_);
  accounted_ = bytes;
  tensor_ = std::move(t);
}

at::Tensor& TensorWrap::live(Napi::Env env) {
  if (!tensor_.defined()) throw Napi::Error::New(env, "this Tensor was disposed; it cannot be used any more");
  return tensor_;
}

Napi::Object TensorWrap::wrap(Napi::Env env, at::Tensor t) {
  return classes(env).tensor.New({Napi::External<at::Tensor>::New(env, &t)});
}

bool TensorWrap::is(const Napi::Value& v) { return v.IsObject() && v.As<Napi::Object>().InstanceOf(classes(v.Env()).tensor.Value()); }

at::Tensor& TensorWrap::unwrap(const Napi::Value& v, const char* what) {
  if (!is(v)) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Tensor");
  return Unwrap(v.As<Napi::Object>())->live(v.Env());
}

Napi::Value TensorWrap::FromBuffer(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "Tensor.from needs a typed array");
    auto arr = info[0].As<Napi::TypedArray>();
    auto shape = parse_shape(info[1], "shape");
    at::ScalarType want = parse_dtype(info[2].As<Napi::String>());
    at::ScalarType src = typed_array_dtype(arr.TypedArrayType(), want);
    int64_t numel = 1;
    for (auto s : shape) numel *= s;
    if (numel != int64_t(arr.ElementLength()))
      throw std::invalid_argument("shape holds " + std::to_string(numel) + " elements but the array has " +
                                  std::to_string(arr.ElementLength()));
    auto t = torch::empty(shape, at::TensorOptions().dtype(src));
    if (numel) std::memcpy(t.data_ptr(), static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset(), t.nbytes());
    return wrap(info.Env(), t.to(want));
  });
}

Napi::Value TensorWrap::Cat(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "cat needs an array of Tensors");
    auto a = info[0].As<Napi::Array>();
    std::vector<at::Tensor> ts;
    for (uint32_t i = 0; i < a.Length(); ++i) ts.push_back(unwrap(a.Get(i), "every element of cat's array"));
    int64_t dim = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    return wrap(info.Env(), at::cat(ts, dim));
  });
}

Napi::Value TensorWrap::Shape(const Napi::CallbackInfo& info) {
  auto& t = live(info.Env());
  auto out = Napi::Array::New(info.Env(), t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) out.Set(uint32_t(i), Napi::Number::New(info.Env(), double(t.size(i))));
  return out;
}

Napi::Value TensorWrap::Dtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_string(live(info.Env()).scalar_type())); }

Napi::Value TensorWrap::Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), live(info.Env()).device().str()); }

Napi::Value TensorWrap::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !tensor_.defined()); }

// Contiguous CPU bytes; float16/bfloat16 come back widened to float32 (JS has no such arrays).
Napi::Value TensorWrap::ToBuffer(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    at::Tensor t = live(info.Env()).to(at::kCPU);
    if (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
    t = t.contiguous();
    auto buf = Napi::ArrayBuffer::New(info.Env(), t.nbytes());
    if (t.nbytes()) std::memcpy(buf.Data(), t.data_ptr(), t.nbytes());
    auto out = Napi::Object::New(info.Env());
    out.Set("buffer", buf);
    out.Set("dtype", dtype_string(t.scalar_type()));
    return out;
  });
}

Napi::Value TensorWrap::To(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    at::Tensor t = live(info.Env());
    if (info[0].IsString()) t = t.to(parse_device(info[0].As<Napi::String>()));
    if (info[1].IsString()) t = t.to(parse_dtype(info[1].As<Napi::String>()));
    return wrap(info.Env(), t);
  });
}

Napi::Value TensorWrap::Binary(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const std::string op = info[0].As<Napi::String>();
    at::Tensor& a = live(info.Env());
    if (info[1].IsNumber()) {
      double s = info[1].As<Napi::Number>().DoubleValue();
      if (op == "add") return wrap(info.Env(), a + s);
      if (op == "sub") return wrap(info.Env(), a - s);
      if (op == "mul") return wrap(info.Env(), a * s);
      if (op == "div") return wrap(info.Env(), a / s);
    } else {
      at::Tensor& b = unwrap(info[1], "the other operand");
      if (op == "add") return wrap(info.Env(), a + b);
      if (op == "sub") return wrap(info.Env(), a - b);
      if (op == "mul") return wrap(info.Env(), a * b);
      if (op == "div") return wrap(info.Env(), a / b);
    }
    throw std::invalid_argument("unknown binary op '" + op + "'");
  });
}

Napi::Value TensorWrap::Unary(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const std::string op = info[0].As<Napi::String>();
    at::Tensor& a = live(info.Env());
    if (op == "sqrt") return wrap(info.Env(), a.sqrt());
    if (op == "neg") return wrap(info.Env(), a.neg());
    if (op == "exp") return wrap(info.Env(), a.exp());
    if (op == "clone") return wrap(info.Env(), a.clone());
    if (op == "contiguous") return wrap(info.Env(), a.contiguous());
    if (op == "allFinite") return Napi::Boolean::New(info.Env(), at::isfinite(a).all().item<bool>());
    if (op == "sum") return Napi::Number::New(info.Env(), a.sum().item<double>());
    if (op == "norm") return Napi::Number::New(info.Env(), a.to(at::kDouble).norm().item<double>());
    throw std::invalid_argument("unknown unary op '" + op + "'");
  });
}

Napi::Value TensorWrap::Clamp(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::optional<at::Scalar> lo, hi;
    if (info[0].IsNumber()) lo = info[0].As<Napi::Number>().DoubleValue();
    if (info[1].IsNumber()) hi = info[1].As<Napi::Number>().DoubleValue();
    return wrap(info.Env(), live(info.Env()).clamp(lo, hi));
  });
}

Napi::Value TensorWrap::Chunk(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int64_t n = info[0].As<Napi::Number>().Int64Value(), dim = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    auto parts = live(info.Env()).chunk(n, dim);
    auto out = Napi::Array::New(info.Env(), parts.size());
    for (size_t i = 0; i < parts.size(); ++i) out.Set(uint32_t(i), wrap(info.Env(), parts[i]));
    return out;
  });
}

Napi::Value TensorWrap::Reshape(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto a = info[0].As<Napi::Array>();
    std::vector<int64_t> shape;
    for (uint32_t i = 0; i < a.Length(); ++i) shape.push_back(a.Get(i).As<Napi::Number>().Int64Value());
    return wrap(info.Env(), live(info.Env()).reshape(shape));
  });
}

Napi::Value TensorWrap::Permute(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return wrap(info.Env(), live(info.Env()).permute(parse_shape(info[0], "dims")).contiguous()); });
}

Napi::Value TensorWrap::Slice(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int64_t dim = info[0].As<Napi::Number>().Int64Value(), start = info[1].As<Napi::Number>().Int64Value(),
            end = info[2].As<Napi::Number>().Int64Value();
    return wrap(info.Env(), live(info.Env()).slice(dim, start, end));
  });
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  if (tensor_.defined()) set(info.Env(), at::Tensor());
  return info.Env().Undefined();
}

}  // namespace sdtorch::addon
