#include "addon/taesd.h"

#include "addon/args.h"
#include "addon/classes.h"
#include "addon/guard.h"
#include "addon/tensor.h"

namespace sdtorch::addon {

namespace {

using Net = std::shared_ptr<TaesdImpl>;

void check_rank(const at::Tensor& t, const char* what, const std::string& shape) {
  if (t.dim() != 4) throw std::invalid_argument(std::string(what) + " must have shape " + shape);
}

// Inputs follow the weights: device and dtype.
at::Tensor prepare(const at::Tensor& x, const TaesdImpl& m) {
  auto p = m.parameters().front();
  return x.to(p.device(), p.scalar_type());
}

}  // namespace

void TaesdWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeTaesd",
      {InstanceMethod("info", &TaesdWrap::Info), InstanceMethod("encode", &TaesdWrap::Encode),
       InstanceMethod("decode", &TaesdWrap::Decode), InstanceMethod("dispose", &TaesdWrap::Dispose)});
  classes(env).taesd = Napi::Persistent(cls);
  exports.Set("NativeTaesd", cls);
  exports.Set("loadTaesd", Napi::Function::New(env, &TaesdWrap::Load));
}

TaesdWrap::TaesdWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TaesdWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "use sdtorch.loadTaesd(files) to load a TAESD");
  taesd_ = *info[0].As<Napi::External<Net>>().Data();
}

Net TaesdWrap::live(Napi::Env env) {
  if (!taesd_) throw Napi::Error::New(env, "this TAESD was disposed; load it again");
  return taesd_;
}

Napi::Value TaesdWrap::Load(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "loadTaesd");
    Napi::Array list = a.array("paths");
    std::vector<std::string> paths;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      if (!list.Get(i).IsString()) throw Napi::TypeError::New(info.Env(), "loadTaesd(): 'paths' must be an array of file paths");
      paths.push_back(list.Get(i).As<Napi::String>());
    }
    const at::Device device = a.device("device");
    const at::ScalarType dtype = a.dtype("dtype");
    return Task<Net>::run(
        info.Env(), [=] { return load_taesd(paths, device, dtype).ptr(); },
        [](Napi::Env env, Net& t) -> Napi::Value { return classes(env).taesd.New({Napi::External<Net>::New(env, &t)}); });
  });
}

// info() -> { encoder, decoder, latentChannels, scale, device, dtype }
Napi::Value TaesdWrap::Info(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto t = live(info.Env());
    auto p = t->parameters().front();
    auto out = Napi::Object::New(info.Env());
    out.Set("encoder", t->encoder_config.has_value());
    out.Set("decoder", t->decoder_config.has_value());
    out.Set("latentChannels", double(t->config().latent));
    out.Set("scale", double(t->config().scale()));
    out.Set("device", p.device().str());
    out.Set("dtype", dtype_string(p.scalar_type()));
    return out;
  });
}

// encode({ images }): [B,3,H,W] in [-1,1] -> UNet latents (TaesdImpl::encode).
Napi::Value TaesdWrap::Encode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto t = live(info.Env());
    at::Tensor x = Args(info, "encode").tensor("images");
    if (!t->encoder) throw std::invalid_argument("this TAESD has no encoder: load taesd_encoder.safetensors with it");
    const int64_t f = t->config().scale();
    check_rank(x, "images", "[B, 3, H, W]");
    if (x.size(1) != 3 || x.size(2) % f || x.size(3) % f)
      throw std::invalid_argument("images must have shape [B, 3, H, W] with H and W multiples of " + std::to_string(f));
    return Task<at::Tensor>::run(
        info.Env(), [=] { return t->encode(prepare(x, *t)); },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

// decode({ latents }): UNet latents -> [B,3,H,W] about [-1,1] (TaesdImpl::decode).
Napi::Value TaesdWrap::Decode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto t = live(info.Env());
    at::Tensor z = Args(info, "decode").tensor("latents");
    if (!t->decoder) throw std::invalid_argument("this TAESD has no decoder: load taesd_decoder.safetensors with it");
    const std::string shape = "[B, " + std::to_string(t->config().latent) + ", h, w]";
    check_rank(z, "latents", shape);
    if (z.size(1) != t->config().latent) throw std::invalid_argument("latents must have shape " + shape);
    return Task<at::Tensor>::run(
        info.Env(), [=] { return t->decode(prepare(z, *t)); },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

Napi::Value TaesdWrap::Dispose(const Napi::CallbackInfo& info) {
  taesd_.reset();
  return info.Env().Undefined();
}

}  // namespace sdtorch::addon
