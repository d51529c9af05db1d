// Module init: the classes and free functions JS sees (see lib/native/binding.ts for their types).
#include <caffe2/core/common.h>
#include <dlfcn.h>
#include <napi.h>
#include <torch/torch.h>

#include "addon/args.h"
#include "addon/classes.h"
#include "addon/guard.h"
#include "addon/model.h"
#include "addon/random.h"
#include "addon/taesd.h"
#include "addon/tensor.h"
#include "addon/threads.h"
#include "io/safetensors.h"
#include "models/keys.h"
#include "models/sources.h"
#include "models/stable_diffusion.h"

namespace sdtorch::addon {
namespace {

using Tensors = std::shared_ptr<TensorFile>;

// Reads the file named by options.path on a worker thread, then turns it into JS with `done`.
// model: a diffusers folder is read too, under LDM names (models/sources.h).
Napi::Value with_file(const Napi::CallbackInfo& info, const char* call, Task<Tensors>::Done done, bool model = false) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, call);
    std::string path = a.string("path");
    bool header_only = a.boolean("headerOnly", false);
    return Task<Tensors>::run(
        info.Env(),
        [path, header_only, model] {
          return std::make_shared<TensorFile>(model ? read_model(path) : load_tensor_file(path, header_only));
        },
        std::move(done));
  });
}

// loadTensors({ path, headerOnly? }) -> { tensors: [name, tensor][], metadata, format }
Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
  return with_file(info, "loadTensors",
        [](Napi::Env env, Tensors& f) -> Napi::Value {
          // [name, tensor] pairs: a name like "__proto__" must stay data, never touch a prototype.
          auto out = Napi::Object::New(env), meta = Napi::Object::New(env);
          auto tensors = Napi::Array::New(env, f->tensors.size());
          for (size_t i = 0; i < f->tensors.size(); ++i) {
            auto pair = Napi::Array::New(env, 2);
            pair.Set(0u, f->tensors[i].first);
            pair.Set(1u, TensorWrap::wrap(env, f->tensors[i].second));
            tensors.Set(uint32_t(i), pair);
          }
          for (auto& [k, v] : f->metadata) meta.Set(k, v);
          out.Set("tensors", tensors);
          out.Set("metadata", meta);
          out.Set("format", f->format);
          return out;
        });
}

// saveTensors({ path, tensors: Record<string, Tensor>, metadata?, overwrite? })
Napi::Value SaveTensors(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "saveTensors");
    std::string path = a.string("path");
    auto rec = a.object("tensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    auto keys = rec.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string k = keys.Get(i).As<Napi::String>();
      tensors.emplace_back(k, TensorWrap::unwrap(rec.Get(k), ("tensors['" + k + "']").c_str()));
    }
    auto meta = a.strings("metadata");
    bool overwrite = a.boolean("overwrite", false);
    return Task<bool>::run(
        info.Env(), [=] { save_safetensors(path, tensors, meta, overwrite); return true; },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

// inspectFile({ path }): what a checkpoint (file or diffusers folder) holds, without building any
// network: format, kind, the preset it loads as with its prediction, and each tensor's dtype/size.
Napi::Value InspectFile(const Napi::CallbackInfo& info) {
  const std::string path = info.Length() && info[0].IsObject() && info[0].As<Napi::Object>().Get("path").IsString()
                               ? info[0].As<Napi::Object>().Get("path").As<Napi::String>().Utf8Value() : "";
  return with_file(info, "inspectFile",
        [path](Napi::Env env, Tensors& f) -> Napi::Value {
          auto out = Napi::Object::New(env);
          auto entries = Napi::Array::New(env, f->tensors.size());
          for (size_t i = 0; i < f->tensors.size(); ++i) {
            const auto& [k, t] = f->tensors[i];
            auto e = Napi::Object::New(env);
            e.Set("name", k);
            e.Set("dtype", dtype_string(t.scalar_type()));
            e.Set("numel", double(t.numel()));
            e.Set("component", component_of(k));
            entries.Set(uint32_t(i), e);
          }
          out.Set("format", f->format);
          out.Set("family", checkpoint_kind(*f));
          // The preset row and prediction loading would pick (null for what sdtorch does not load).
          out.Set("preset", env.Null());
          out.Set("prediction", env.Null());
          try {
            const Family fam = detect_family(with_canonical_keys(*f, path), path);
            out.Set("preset", fam.name);
            out.Set("label", fam.label);
            out.Set("prediction", fam.prediction);
            out.Set("defaultSize", double(fam.default_size));
          } catch (const std::exception&) {
          }
          out.Set("tensors", entries);
          return out;
        }, /*model=*/true);
}

Napi::Value PresetManifest(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    auto entries = preset_manifest(Args(info, "presetManifest").string("preset"));
    auto out = Napi::Array::New(info.Env(), entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      auto shape = Napi::Array::New(info.Env(), entries[i].second.size());
      for (size_t d = 0; d < entries[i].second.size(); ++d) shape.Set(uint32_t(d), double(entries[i].second[d]));
      auto pair = Napi::Array::New(info.Env(), 2);
      pair.Set(0u, entries[i].first);
      pair.Set(1u, shape);
      out.Set(uint32_t(i), pair);
    }
    return out;
  });
}

// The version of the libtorch actually loaded (its own build record), not of the headers we saw.
std::string loaded_torch_version() {
  const auto& options = caffe2::GetBuildOptions();
  auto it = options.find("TORCH_VERSION");
  return it == options.end() ? "unknown" : it->second;
}

std::string loaded_torch_path() {
  Dl_info where{};
  return dladdr(reinterpret_cast<void*>(&caffe2::GetBuildOptions), &where) && where.dli_fname ? where.dli_fname : "?";
}

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  out.Set("torchVersion", loaded_torch_version());
  out.Set("builtForTorch", SDTORCH_TORCH_VERSION);
  out.Set("cudaAvailable", torch::cuda::is_available());
  out.Set("cudaDevices", double(torch::cuda::device_count()));
  out.Set("threads", double(at::get_num_threads()));
  return out;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Another libtorch than ours may load when its symbols happen to match; refuse it here rather
  // than fail later in some kernel.
  if (loaded_torch_version() != SDTORCH_TORCH_VERSION) {
    throw Napi::Error::New(env, "sdtorch's native addon was built for libtorch " SDTORCH_TORCH_VERSION ", but libtorch " +
                                    loaded_torch_version() + " is loaded (" + loaded_torch_path() +
                                    "). Use libtorch " SDTORCH_TORCH_VERSION " (LIBTORCH=/path/to/it, or pip install torch==" SDTORCH_TORCH_VERSION
                                    "), or rebuild against this one: npx sdtorch build");
  }
  pin_thread_counts();
  // float32 means float32 on CUDA too: no TF32 convolutions (libtorch's default allows them), so a
  // GPU run in fp32 gives the CPU's image; fp16/bf16 are the fast paths.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  env.SetInstanceData(new Classes());
  TensorWrap::Init(env, exports);
  GeneratorWrap::Init(env, exports);
  ModelWrap::Init(env, exports);
  TaesdWrap::Init(env, exports);
  exports.Set("loadTensors", Napi::Function::New(env, LoadTensors));
  exports.Set("saveTensors", Napi::Function::New(env, SaveTensors));
  exports.Set("inspectFile", Napi::Function::New(env, InspectFile));
  exports.Set("presetManifest", Napi::Function::New(env, PresetManifest));
  exports.Set("systemInfo", Napi::Function::New(env, SystemInfo));
  return exports;
}

}  // namespace sdtorch::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sdtorch::addon::Init(env, exports); }
NODE_API_MODULE(sdtorch, InitModule)
