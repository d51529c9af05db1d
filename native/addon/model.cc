#include "addon/model.h"

#include "addon/guard.h"
#include "addon/tensor.h"

namespace sdtorch::addon {

Napi::FunctionReference ModelWrap::constructor_;

namespace {

using Model = std::shared_ptr<StableDiffusion>;

// Inputs follow the weights: a CPU tensor given to a CUDA model moves there, dtype included.
at::Tensor prepare(const at::Tensor& x, const nn::Module& m, bool floating = true) {
  auto p = m.parameters().front();
  return floating ? x.to(p.device(), p.scalar_type()) : x.to(p.device());
}

nn::Module& component(StableDiffusion& sd, const std::string& name) {
  if (name == "textEncoder") return *sd.clip;
  if (name == "unet") return *sd.unet;
  if (name == "vae") return *sd.vae;
  throw std::invalid_argument("unknown component '" + name + "'; use textEncoder, unet or vae");
}

void check_rank(const at::Tensor& t, int64_t rank, const char* what, const char* shape) {
  if (t.dim() != rank) throw std::invalid_argument(std::string(what) + " must have shape " + shape);
}

}  // namespace

void ModelWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeModel",
      {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("encodeText", &ModelWrap::EncodeText),
       InstanceMethod("unet", &ModelWrap::Unet), InstanceMethod("vaeEncode", &ModelWrap::VaeEncode),
       InstanceMethod("vaeDecode", &ModelWrap::VaeDecode), InstanceMethod("moveTo", &ModelWrap::MoveTo),
       InstanceMethod("dispose", &ModelWrap::Dispose)});
  constructor_ = Napi::Persistent(cls);
  exports.Set("NativeModel", cls);
  exports.Set("loadModel", Napi::Function::New(env, &ModelWrap::Load));
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "use sdtorch.loadPipeline(path) to load a model");
  model_ = *info[0].As<Napi::External<Model>>().Data();
}

Model ModelWrap::live(Napi::Env env) {
  if (!model_) throw Napi::Error::New(env, "this model was disposed; load it again");
  return model_;
}

Napi::Value ModelWrap::Load(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::string path = info[0].As<Napi::String>();
    at::Device device = parse_device(info[1].As<Napi::String>());
    at::ScalarType dtype = parse_dtype(info[2].As<Napi::String>());
    return Task<Model>::run(
        info.Env(), [=] { return load_stable_diffusion(load_tensor_file(path), path, device, dtype); },
        [](Napi::Env env, Model& m) -> Napi::Value { return constructor_.New({Napi::External<Model>::New(env, &m)}); });
  });
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  auto m = live(info.Env());
  auto out = Napi::Object::New(info.Env());
  auto p = m->unet->parameters().front();
  out.Set("config", m->config.name);
  out.Set("dtype", dtype_string(p.scalar_type()));
  out.Set("unetDevice", p.device().str());
  out.Set("textEncoderDevice", m->clip->parameters().front().device().str());
  out.Set("vaeDevice", m->vae->parameters().front().device().str());
  out.Set("vaeDtype", dtype_string(m->vae->parameters().front().scalar_type()));
  out.Set("contextDim", double(m->config.unet.context));
  out.Set("vaeScale", double(int64_t(1) << (m->config.vae.mult.size() - 1)));  // pixels per latent cell
  return out;
}

Napi::Value ModelWrap::EncodeText(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    at::Tensor ids = TensorWrap::unwrap(info[0], "token ids");
    check_rank(ids, 2, "token ids", "[B, 77]");
    if (ids.size(1) > m->config.clip.positions) throw std::invalid_argument("token ids must have at most 77 positions");
    if (ids.is_floating_point()) throw std::invalid_argument("token ids must be an integer tensor");
    return Task<at::Tensor>::run(
        info.Env(), [=] { return m->clip->forward(prepare(ids, *m->clip, false).to(at::kLong)); },
        [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorWrap::wrap(env, t); });
  });
}

Napi::Value ModelWrap::Unet(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    at::Tensor x = TensorWrap::unwrap(info[0], "x"), t = TensorWrap::unwrap(info[1], "t"), ctx = TensorWrap::unwrap(info[2], "context");
    check_rank(x, 4, "x", "[B, 4, h, w]");
    check_rank(ctx, 3, "context", "[B, 77, 768]");
    if (t.dim() == 0) t = t.expand({x.size(0)});
    if (t.dim() != 1 || t.size(0) != x.size(0)) throw std::invalid_argument("t must have shape [B] matching x");
    if (ctx.size(0) != x.size(0)) throw std::invalid_argument("context batch must match x batch");
    if (x.size(1) != m->config.unet.in) throw std::invalid_argument("x must have " + std::to_string(m->config.unet.in) + " channels");
    if (ctx.size(2) != m->config.unet.context)
      throw std::invalid_argument("context width must be " + std::to_string(m->config.unet.context));
    return Task<at::Tensor>::run(
        info.Env(), [=] { return m->unet->forward(prepare(x, *m->unet), t.to(x.device()), prepare(ctx, *m->unet)); },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

Napi::Value ModelWrap::VaeEncode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    at::Tensor x = TensorWrap::unwrap(info[0], "images");
    int64_t tile = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    check_rank(x, 4, "images", "[B, 3, H, W]");
    if (x.size(1) != 3 || x.size(2) % 8 || x.size(3) % 8)
      throw std::invalid_argument("images must have shape [B, 3, H, W] with H and W multiples of 8");
    return Task<at::Tensor>::run(
        info.Env(), [=] { return m->vae->encode(prepare(x, *m->vae), tile); },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

Napi::Value ModelWrap::VaeDecode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    at::Tensor z = TensorWrap::unwrap(info[0], "latents");
    int64_t tile = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    check_rank(z, 4, "latents", "[B, 4, h, w]");
    if (z.size(1) != m->config.vae.z) throw std::invalid_argument("latents must have 4 channels");
    return Task<at::Tensor>::run(
        info.Env(), [=] { return m->vae->decode(prepare(z, *m->vae), tile); },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

// moveTo(component, device, dtype?): keeps idle networks off the GPU between stages; a dtype
// casts too (the fp16 VAE falls back to fp32 when it overflows).
Napi::Value ModelWrap::MoveTo(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    nn::Module& c = component(*m, info[0].As<Napi::String>());
    at::Device device = parse_device(info[1].As<Napi::String>());
    std::optional<at::ScalarType> dtype;
    if (info[2].IsString()) dtype = parse_dtype(info[2].As<Napi::String>());
    return Task<bool>::run(
        info.Env(), [m, &c, device, dtype] { dtype ? c.to(device, *dtype) : c.to(device); return true; },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  model_.reset();
  return info.Env().Undefined();
}

}  // namespace sdtorch::addon
