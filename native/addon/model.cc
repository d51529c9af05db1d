#include "addon/model.h"

#include <mutex>
#include <shared_mutex>

#include "addon/args.h"
#include "addon/classes.h"
#include "addon/guard.h"
#include "addon/tensor.h"
#include "io/heap.h"

namespace sdtorch::addon {

namespace {

using Model = std::shared_ptr<StableDiffusion>;

// Inputs follow the weights: a CPU tensor given to a CUDA model moves there, dtype included.
at::Tensor prepare(const at::Tensor& x, const nn::Module& m, bool floating = true) {
  auto p = m.parameters().front();
  return floating ? x.to(p.device(), p.scalar_type()) : x.to(p.device());
}

// A component's networks and their file key prefixes ("textEncoder": every text encoder of the family).
std::vector<std::pair<nn::Module*, std::string>> component(StableDiffusion& sd, const std::string& name) {
  if (name == "unet") return {{sd.unet.get(), kUNetPrefix}};
  if (name == "vae") return {{sd.vae.get(), kVaePrefix}};
  if (name != "textEncoder") throw std::invalid_argument("unknown component '" + name + "'; use textEncoder, unet or vae");
  std::vector<std::pair<nn::Module*, std::string>> out;
  for (auto& te : sd.text_encoders) out.emplace_back(te.get(), te->config.prefix);
  return out;
}

void check_rank(const at::Tensor& t, int64_t rank, const char* what, const std::string& shape) {
  if (t.dim() != rank) throw std::invalid_argument(std::string(what) + " must have shape " + shape);
}

}  // namespace

void ModelWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "NativeModel",
      {InstanceMethod("info", &ModelWrap::Info), InstanceMethod("encodeText", &ModelWrap::EncodeText),
       InstanceMethod("unet", &ModelWrap::Unet), InstanceMethod("vaeEncode", &ModelWrap::VaeEncode),
       InstanceMethod("vaeDecode", &ModelWrap::VaeDecode), InstanceMethod("moveTo", &ModelWrap::MoveTo),
       InstanceMethod("setLoras", &ModelWrap::SetLoras), InstanceMethod("parameters", &ModelWrap::Parameters),
       InstanceMethod("dispose", &ModelWrap::Dispose)});
  classes(env).model = Napi::Persistent(cls);
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
    Args a(info, "loadModel");
    LoadRequest request;
    request.path = a.string("path");
    request.vae = a.string("vae", "");
    request.prediction = a.string("prediction", "");
    if (!request.prediction.empty()) prediction_name(request.prediction);  // refuse a bad spelling before reading the file
    request.device = a.device("device");
    request.dtype = a.dtype("dtype");
    auto switch_of = [&](const char* name) {
      std::string v = a.string(name, "auto");
      if (v != "auto" && v != "on" && v != "off") throw std::invalid_argument(std::string("loadModel: ") + name + " must be 'auto', 'on' or 'off'");
      return v;
    };
    request.prepack = switch_of("prepack");
    request.winograd = switch_of("winograd");
    return Task<Model>::run(
        info.Env(), [=] { return load_stable_diffusion(request); },
        [](Napi::Env env, Model& m) -> Napi::Value { return classes(env).model.New({Napi::External<Model>::New(env, &m)}); });
  });
}

// What the checkpoint is (its family's preset row) and where its networks are now.
Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  auto m = live(info.Env());
  const Family& f = m->family;
  auto env = info.Env();
  auto out = Napi::Object::New(env);
  auto p = m->unet->parameters().front();
  out.Set("config", f.name);
  out.Set("dtype", dtype_string(p.scalar_type()));
  out.Set("unetDevice", p.device().str());
  out.Set("textEncoderDevice", m->text_encoders.front()->parameters().front().device().str());
  out.Set("vaeDevice", m->vae->parameters().front().device().str());
  out.Set("vaeDtype", dtype_string(m->vae->parameters().front().scalar_type()));
  out.Set("vae", m->vae_path.empty() ? env.Null() : Napi::String::New(env, m->vae_path));
  auto prepacked = Napi::Object::New(env);
  prepacked.Set("unet", prepacks(*m->unet));
  prepacked.Set("vae", prepacks(*m->vae));
  out.Set("prepacked", prepacked);
  auto winograd = Napi::Object::New(env);
  winograd.Set("unet", winograd_convs(*m->unet));
  winograd.Set("vae", winograd_convs(*m->vae));
  out.Set("winograd", winograd);
  auto family = Napi::Object::New(env);
  family.Set("name", f.name);
  family.Set("label", f.label);
  family.Set("latentChannels", double(f.unet.out));
  family.Set("unetInChannels", double(f.unet.in));
  family.Set("latentScale", f.latent_scale);
  family.Set("prediction", f.prediction);
  family.Set("vaeScaleFactor", double(f.vae_scale_factor()));
  family.Set("defaultSize", double(f.default_size));
  family.Set("contextDim", double(f.unet.context));
  auto encoders = Napi::Array::New(env, f.text_encoders.size());
  for (size_t i = 0; i < f.text_encoders.size(); ++i) {
    const ClipConfig& c = f.text_encoders[i];
    auto encoder = Napi::Object::New(env);
    encoder.Set("width", double(c.width));
    encoder.Set("maxTokens", double(c.positions));
    encoder.Set("vocab", double(c.vocab));
    encoder.Set("layers", double(c.layers - c.hidden_from_end));  // the clip skip range: 1..layers
    encoder.Set("padToken", double(c.pad_token));
    encoder.Set("projection", double(c.projection));
    encoders.Set(uint32_t(i), encoder);
  }
  family.Set("textEncoders", encoders);
  auto time_ids = Napi::Array::New(env, f.time_ids.size());
  for (size_t i = 0; i < f.time_ids.size(); ++i) time_ids.Set(uint32_t(i), f.time_ids[i]);
  family.Set("timeIds", time_ids);
  family.Set("zeroEmptyNegative", f.zero_empty_negative);
  family.Set("timestepSpacing", f.timestep_spacing.empty() ? env.Null() : Napi::String::New(env, f.timestep_spacing));
  out.Set("family", family);
  return out;
}

// encodeText({ ids, encoder?, clipSkip?, injectIndex?, injectVectors?, pooled? }) -> context, or
// { context, pooled } with pooled: true: see ClipTextModelImpl::forward.
Napi::Value ModelWrap::EncodeText(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    Args a(info, "encodeText");
    at::Tensor ids = a.tensor("ids");
    const int64_t skip = a.integer("clipSkip", 1);
    const int64_t which = a.integer("encoder", 0);
    const bool pooled = a.boolean("pooled", false);
    std::optional<at::Tensor> index = a.optional_tensor("injectIndex"), vectors = a.optional_tensor("injectVectors");
    const int64_t count = int64_t(m->text_encoders.size());
    if (which < 0 || which >= count)
      throw std::invalid_argument("encoder must be from 0 to " + std::to_string(count - 1) + " (this " + m->family.label + " model has " +
                                  std::to_string(count) + " text encoder" + (count > 1 ? "s" : "") + "), got " + std::to_string(which));
    ClipTextModel te = m->text_encoders[which];
    const auto& c = te->config;
    if (pooled && c.projection == 0)
      throw std::invalid_argument("text encoder " + std::to_string(which) + " of this " + m->family.label + " model has no text projection: it gives no pooled output");
    const std::string shape = "[B, " + std::to_string(c.positions) + "]";
    check_rank(ids, 2, "token ids", shape);
    if (ids.size(1) > c.positions) throw std::invalid_argument("token ids must have shape " + shape + " (at most " + std::to_string(c.positions) + " positions)");
    if (ids.is_floating_point() || ids.scalar_type() == at::kBool) throw std::invalid_argument("token ids must be an integer tensor");
    if (ids.numel() && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab))
      throw std::invalid_argument("token ids must be in [0, " + std::to_string(c.vocab) + ") (this text encoder's vocabulary), got " +
                                  std::to_string(ids.min().item<int64_t>()) + " .. " + std::to_string(ids.max().item<int64_t>()));
    const int64_t max_skip = c.layers - c.hidden_from_end;
    if (skip < 1 || skip > max_skip)
      throw std::invalid_argument("clipSkip must be from 1 (the model's own layer) to " + std::to_string(max_skip) + ", got " + std::to_string(skip));
    if (bool(index) != bool(vectors)) throw std::invalid_argument("injectIndex and injectVectors go together");
    if (index) {
      check_rank(*index, 1, "injectIndex", "[N]");
      check_rank(*vectors, 2, "injectVectors", "[N, " + std::to_string(c.width) + "]");
      if (index->is_floating_point() || vectors->size(0) != index->size(0) || vectors->size(1) != c.width)
        throw std::invalid_argument("injectVectors must have shape [N, " + std::to_string(c.width) + "] for N integer positions in injectIndex");
      if (index->numel() && (index->min().item<int64_t>() < 0 || index->max().item<int64_t>() >= ids.numel()))
        throw std::invalid_argument("injectIndex positions must lie inside the token ids");
    }
    return Task<TextEncoding>::run(
        info.Env(),
        [=]() mutable {
          std::shared_lock weights(m->weights_mutex);
          m->text_pages_resident = true;
          at::Tensor i = index ? prepare(*index, *te, false).to(at::kLong) : at::Tensor();
          at::Tensor v = vectors ? prepare(*vectors, *te) : at::Tensor();
          return te->forward(prepare(ids, *te, false).to(at::kLong), skip, i, v, pooled);
        },
        [pooled](Napi::Env env, TextEncoding& r) -> Napi::Value {
          if (!pooled) return TensorWrap::wrap(env, r.context);
          auto out = Napi::Object::New(env);
          out.Set("context", TensorWrap::wrap(env, r.context));
          out.Set("pooled", TensorWrap::wrap(env, r.pooled));
          return out;
        });
  });
}

// unet({ x, t, context, concat?, textEmbeds?, timeIds? }): one conditioning object, so new inputs need no new signature.
Napi::Value ModelWrap::Unet(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    Args a(info, "unet");
    at::Tensor x = a.tensor("x"), t = a.tensor("t"), ctx = a.tensor("context");
    std::optional<at::Tensor> concat = a.optional_tensor("concat");
    std::optional<at::Tensor> text_embeds = a.optional_tensor("textEmbeds"), time_ids = a.optional_tensor("timeIds");
    const auto& c = m->family.unet;
    if (c.adm_in == 0 && (text_embeds || time_ids))
      throw std::invalid_argument("this " + m->family.label + " UNet takes no vector conditioning: leave textEmbeds and timeIds out");
    if (c.adm_in > 0) {
      const int64_t pooled = m->family.text_encoders.back().projection, n = int64_t(m->family.time_ids.size());
      const int64_t numbers = (c.adm_in - pooled) / c.time_id_dim;  // time ids (2 per size, 1 for a score)
      const std::string te_shape = "[B, " + std::to_string(pooled) + "]", ids_shape = "[B, " + std::to_string(numbers) + "]";
      if (!text_embeds || !time_ids)
        throw std::invalid_argument("this " + m->family.label + " UNet needs textEmbeds " + te_shape + " (the pooled text) and timeIds " +
                                    ids_shape + " (" + std::to_string(n) + " size/crop/score entries)");
      check_rank(*text_embeds, 2, "textEmbeds", te_shape);
      check_rank(*time_ids, 2, "timeIds", ids_shape);
      if (text_embeds->size(1) != pooled || text_embeds->size(0) != x.size(0))
        throw std::invalid_argument("textEmbeds must have shape " + te_shape + " with B = x's batch, got " + shape_str(text_embeds->sizes()));
      if (time_ids->size(1) != numbers || time_ids->size(0) != x.size(0))
        throw std::invalid_argument("timeIds must have shape " + ids_shape + " with B = x's batch, got " + shape_str(time_ids->sizes()));
      if (!time_ids->isfinite().all().item<bool>() || !text_embeds->isfinite().all().item<bool>())
        throw std::invalid_argument("textEmbeds and timeIds must be finite, got NaN or infinity");
    }
    const int64_t extra = c.in - c.out;  // channels joined to x: 5 for inpainting models, else none
    const std::string ctx_shape = "[B, tokens, " + std::to_string(c.context) + "]";
    check_rank(x, 4, "x", "[B, " + std::to_string(c.out) + ", h, w]");
    check_rank(ctx, 3, "context", ctx_shape);
    if (t.dim() == 0) t = t.expand({x.size(0)});
    if (t.dim() != 1 || t.size(0) != x.size(0)) throw std::invalid_argument("t must have shape [B] matching x");
    if (ctx.size(0) != x.size(0)) throw std::invalid_argument("context batch must match x batch");
    if (extra == 0 && concat)
      throw std::invalid_argument("this " + m->family.label + " UNet takes no concat (it is not an inpainting model): leave concat out");
    if (extra > 0 && !concat)
      throw std::invalid_argument("this model's UNet takes " + std::to_string(c.in) + " input channels: pass concat with the " +
                                  std::to_string(extra) + " extra channels (mask and masked-image latents)");
    if (concat) check_rank(*concat, 4, "concat", "[B, " + std::to_string(extra) + ", h, w]");
    if (concat && concat->size(1) != extra)
      throw std::invalid_argument("concat must have " + std::to_string(extra) + " channels (mask and masked-image latents), got " +
                                  std::to_string(concat->size(1)));
    if (concat && (concat->size(0) != x.size(0) || concat->sizes().slice(2) != x.sizes().slice(2)))
      throw std::invalid_argument("concat must match x in batch and size");
    if (x.size(1) != c.out)
      throw std::invalid_argument("x must have " + std::to_string(c.out) + " channels (" + m->family.label + " latents), got " +
                                  std::to_string(x.size(1)));
    if (ctx.size(2) != c.context)
      throw std::invalid_argument("context must have shape " + ctx_shape + " (width " + std::to_string(c.context) + "), got width " +
                                  std::to_string(ctx.size(2)));
    if (t.is_floating_point() && !t.isfinite().all().item<bool>()) throw std::invalid_argument("t must be finite timesteps, got NaN or infinity");
    return Task<at::Tensor>::run(
        info.Env(),
        [=] {
          std::shared_lock weights(m->weights_mutex);
          release_text_pages(*m);
          Conditioning cond{prepare(ctx, *m->unet), concat ? prepare(*concat, *m->unet) : at::Tensor(),
                            text_embeds ? prepare(*text_embeds, *m->unet) : at::Tensor(),
                            time_ids ? time_ids->to(x.device(), at::kFloat) : at::Tensor()};
          return m->unet->forward(prepare(x, *m->unet), t.to(x.device()), cond);
        },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

Napi::Value ModelWrap::VaeEncode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    Args a(info, "vaeEncode");
    at::Tensor x = a.tensor("images");
    int64_t tile = a.integer("tile", 0);
    const int64_t f = m->family.vae_scale_factor();
    check_rank(x, 4, "images", "[B, 3, H, W]");
    if (x.size(1) != 3 || x.size(2) % f || x.size(3) % f)
      throw std::invalid_argument("images must have shape [B, 3, H, W] with H and W multiples of " + std::to_string(f));
    return Task<at::Tensor>::run(
        info.Env(),
        [=] {
          std::shared_lock weights(m->weights_mutex);
          return m->vae->encode(prepare(x, *m->vae), tile);
        },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

Napi::Value ModelWrap::VaeDecode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    Args a(info, "vaeDecode");
    at::Tensor z = a.tensor("latents");
    int64_t tile = a.integer("tile", 0);
    const int64_t zc = m->family.vae.z;
    check_rank(z, 4, "latents", "[B, " + std::to_string(zc) + ", h, w]");
    if (z.size(1) != zc) throw std::invalid_argument("latents must have " + std::to_string(zc) + " channels");
    return Task<at::Tensor>::run(
        info.Env(),
        [=] {
          std::shared_lock weights(m->weights_mutex);
          // The sampling loop's freed activations stay in the heap; the decoder's are larger (up to
          // [B,256,H,W]) and would come on top of them: ~0.4 GB less peak at 512x512. So would the
          // UNet's Winograd weights (0.54 GB for SD 1.x), remade at its next call (~0.3 s).
          drop_prepacked(*m->unet, /*winograd_only=*/true);
          trim_heap();
          return m->vae->decode(prepare(z, *m->vae), tile);
        },
        [](Napi::Env env, at::Tensor& r) -> Napi::Value { return TensorWrap::wrap(env, r); });
  });
}

// moveTo({ component, device, dtype? }): keeps idle networks off the GPU between stages; a dtype
// casts too (the fp16 VAE falls back to fp32 when it overflows).
Napi::Value ModelWrap::MoveTo(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    Args a(info, "moveTo");
    auto nets = component(*m, a.string("component"));
    at::Device device = a.device("device");
    std::optional<at::ScalarType> dtype = a.optional_dtype("dtype");
    return Task<bool>::run(
        info.Env(),
        [m, nets, device, dtype] {
          std::unique_lock weights(m->weights_mutex);
          for (auto& [c, prefix] : nets) {
            dtype ? c->to(device, *dtype) : c->to(device);
            drop_prepacked(*c);
          }
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

// setLoras({ loras: [{ name, path, multiplier }] }) -> { applied: [{ name, modules, unmatched }],
// weights: { total, patched, mapped } }. Replaces the whole set; [] restores the base weights.
Napi::Value ModelWrap::SetLoras(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    Args a(info, "setLoras");
    Napi::Array list = a.array("loras");
    std::vector<LoraRequest> loras;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Args l(info.Env(), list.Get(i), "setLoras(): 'loras[" + std::to_string(i) + "]");
      loras.push_back({l.string("name"), l.string("path"), l.number("multiplier")});
    }
    struct Result {
      std::vector<LoraReport> reports;
      WeightCounts counts;
    };
    return Task<Result>::run(
        info.Env(),
        [m, loras] {
          Result r;
          r.reports = set_loras(*m, loras, &r.counts);
          return r;
        },
        [](Napi::Env env, Result& r) -> Napi::Value {
          auto out = Napi::Object::New(env);
          auto applied = Napi::Array::New(env, r.reports.size());
          for (size_t i = 0; i < r.reports.size(); ++i) {
            const LoraReport& rep = r.reports[i];
            auto o = Napi::Object::New(env);
            o.Set("name", rep.name);
            o.Set("modules", double(rep.modules));
            auto unmatched = Napi::Array::New(env, rep.unmatched.size());
            for (size_t j = 0; j < rep.unmatched.size(); ++j) unmatched.Set(uint32_t(j), rep.unmatched[j]);
            o.Set("unmatched", unmatched);
            applied.Set(uint32_t(i), o);
          }
          auto weights = Napi::Object::New(env);
          weights.Set("total", double(r.counts.total));
          weights.Set("patched", double(r.counts.patched));
          weights.Set("mapped", double(r.counts.mapped));
          out.Set("applied", applied);
          out.Set("weights", weights);
          return out;
        });
  });
}

// parameters({ component }) -> [file key, tensor][]: the network's weights as they are now, LoRAs
// included (views, not copies; a later setLoras does not change them).
Napi::Value ModelWrap::Parameters(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto m = live(info.Env());
    auto nets = component(*m, Args(info, "parameters").string("component"));
    using Named = std::vector<std::pair<std::string, at::Tensor>>;
    return Task<Named>::run(
        info.Env(),
        [m, nets] {
          std::shared_lock weights(m->weights_mutex);
          Named out;
          for (auto& [c, prefix] : nets)
            for (const auto& p : c->named_parameters()) out.emplace_back(prefix + p.key(), p.value().detach());
          return out;
        },
        [](Napi::Env env, Named& named) -> Napi::Value {
          auto out = Napi::Array::New(env, named.size());
          for (size_t i = 0; i < named.size(); ++i) {
            auto pair = Napi::Array::New(env, 2);
            pair.Set(0u, named[i].first);
            pair.Set(1u, TensorWrap::wrap(env, named[i].second));
            out.Set(uint32_t(i), pair);
          }
          return out;
        });
  });
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  const bool last = model_.use_count() == 1;  // no forward in flight holds it
  model_.reset();
  // Weights under glibc's mmap threshold were freed into the heap; hand them back to the system, or the
  // next model adds its size on top: SDXL base then refiner peaked at ~22 GB instead of ~14.
  if (last) trim_heap();
  return info.Env().Undefined();
}

}  // namespace sdtorch::addon
