// Seeded CPU generators: randn(shape, Generator(seed)) equals Python's
// torch.randn(shape, generator=torch.Generator().manual_seed(seed)).
#include <ATen/CPUGeneratorImpl.h>

#include "addon/guard.h"
#include "addon/random.h"
#include "addon/tensor.h"

namespace sdtorch::addon {

void GeneratorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeGenerator", {InstanceMethod("randn", &GeneratorWrap::Randn)});
  exports.Set("NativeGenerator", cls);
}

GeneratorWrap::GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
  uint64_t seed = 0;
  bool lossless = true;
  if (info[0].IsBigInt()) seed = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  else if (info[0].IsNumber()) {
    double d = info[0].As<Napi::Number>().DoubleValue();
    lossless = d >= 0 && d == double(uint64_t(d)) && d < 18446744073709551616.0;
    seed = uint64_t(d);
  } else lossless = false;
  if (!lossless) throw Napi::TypeError::New(info.Env(), "Generator seed must be an integer in [0, 2^64) (number or bigint)");
  generator_ = at::detail::createCPUGenerator(seed);
}

Napi::Value GeneratorWrap::Randn(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto shape = parse_shape(info[0], "shape");
    // Draws happen on the JS thread, in call order (libtorch locks the generator itself).
    return TensorWrap::wrap(info.Env(), at::randn(shape, generator_, at::TensorOptions().dtype(at::kFloat)));
  });
}

}  // namespace sdtorch::addon
