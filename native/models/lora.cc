#include "models/lora.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <unordered_map>

#include "io/heap.h"
#include "io/json.h"
#include "io/tensor_file.h"
#include "models/diffusers_names.h"
#include "models/stable_diffusion.h"

namespace sdtorch {
namespace {

bool starts(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
bool ends(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// libtorch's messages without their C++ backtrace.
std::string message(const std::exception& e) {
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}


// The tensor parts of one adapted layer, by the name that follows the layer's name in the file.
const char* const kParts[] = {
    // LoRA / LoCon (kohya), PEFT, diffusers' older attention-processor LoRA
    "lora_down.weight", "lora_up.weight", "lora_mid.weight", "lora_A.weight", "lora_B.weight", "down.weight", "up.weight",
    "alpha", "scale",
    // LoHa
    "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
    // LoKr
    "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"};

// Network types we recognise but do not apply: their update is not a plain weight difference of this
// kind (DoRA rescales the sum; the others change biases, norms or the input).
const std::pair<const char*, const char*> kUnsupported[] = {
    {"dora_scale", "DoRA"}, {"lora_magnitude_vector", "DoRA"}, {"diff", "LyCORIS full (diff)"}, {"diff_b", "LyCORIS full (diff)"},
    {"on_input", "IA3"}, {"oft_blocks", "OFT"}, {"oft_diag", "OFT"}, {"a1.weight", "GLoRA"}, {"b1.weight", "GLoRA"},
    {"w_norm", "LyCORIS norm"}, {"b_norm", "LyCORIS norm"}};

struct Module {
  std::string name;                         // as the file spells it, without the tensor part
  std::map<std::string, at::Tensor> parts;  // "lora_down.weight" -> tensor
  std::string target;                       // the parameter's file key
  double alpha = 0;                         // from the file's metadata when no "alpha" tensor (PEFT)
  double factor = 0;                        // multiplier * scale, set once the rank is known

  bool has(const char* part) const { return parts.count(part) > 0; }
  at::Tensor get(const char* part, at::Device d) const { return parts.at(part).to(d, at::kFloat); }
  // A LoRA's (down, up) parts in whichever spelling the file uses; nullptrs when it is no LoRA.
  std::pair<const char*, const char*> lora() const {
    for (auto [down, up] : {std::pair{"lora_down.weight", "lora_up.weight"}, {"lora_A.weight", "lora_B.weight"}, {"down.weight", "up.weight"}})
      if (has(down) && has(up)) return {down, up};
    return {nullptr, nullptr};
  }
};

// Σ_ij a[i, o] · t[i, j, k, l] · b[j, c] -> [o, c, k, l]: the Tucker (CP) rebuild LyCORIS uses for a
// core `t` with factors a [r, out] and b [r, in].
at::Tensor tucker(const at::Tensor& t, const at::Tensor& a, const at::Tensor& b) {
  return at::einsum("ijkl,io,jc->ockl", {t, a.flatten(1), b.flatten(1)});
}

// ΔW of one module before scaling, in fp32 on `d`, in the shape its factors give (the caller reshapes
// it to the layer's); `rank` receives what alpha is divided by (0: the network has none). On the meta
// device this checks the shapes without computing anything.
at::Tensor delta(const Module& m, at::Device d, int64_t& rank) {
  if (auto [down, up] = m.lora(); down) {
    // LoRA: up [out, r(,1,1)] @ down [r, in(,k,k)]; LoCon's lora_mid [r, r, k, k] is a Tucker core.
    auto u = m.get(up, d).flatten(1), w = m.get(down, d);
    rank = w.size(0);
    if (m.has("lora_mid.weight")) return tucker(m.get("lora_mid.weight", d), u.t(), w);
    return u.mm(w.flatten(1));
  }
  if (m.has("hada_w1_a") && m.has("hada_w1_b") && m.has("hada_w2_a") && m.has("hada_w2_b")) {
    // LoHa: the elementwise product of two low-rank products (each a Tucker rebuild when it has a core).
    auto side = [&](const char* a, const char* b, const char* t) {
      return m.has(t) ? tucker(m.get(t, d), m.get(a, d), m.get(b, d)) : m.get(a, d).flatten(1).mm(m.get(b, d).flatten(1));
    };
    rank = m.parts.at("hada_w1_b").size(0);
    auto p1 = side("hada_w1_a", "hada_w1_b", "hada_t1"), p2 = side("hada_w2_a", "hada_w2_b", "hada_t2");
    return p1 * p2.reshape(p1.sizes());
  }
  const bool w1 = m.has("lokr_w1") || (m.has("lokr_w1_a") && m.has("lokr_w1_b"));
  const bool w2 = m.has("lokr_w2") || (m.has("lokr_w2_a") && m.has("lokr_w2_b"));
  if (w1 && w2) {
    // LoKr: kron(w1, w2), each factor whole or a low-rank product (w2 possibly with a Tucker core).
    auto a = m.has("lokr_w1") ? m.get("lokr_w1", d) : m.get("lokr_w1_a", d).mm(m.get("lokr_w1_b", d));
    auto b = m.has("lokr_w2")   ? m.get("lokr_w2", d)
             : m.has("lokr_t2") ? tucker(m.get("lokr_t2", d), m.get("lokr_w2_a", d), m.get("lokr_w2_b", d))
                                : m.get("lokr_w2_a", d).flatten(1).mm(m.get("lokr_w2_b", d).flatten(1));
    rank = m.has("lokr_w2_b") ? m.parts.at("lokr_w2_b").size(0) : m.has("lokr_w1_b") ? m.parts.at("lokr_w1_b").size(0) : 0;
    if (b.dim() == 4) a = a.unsqueeze(2).unsqueeze(3);
    return at::kron(a, b.contiguous());
  }
  std::string names;
  for (const auto& [part, t] : m.parts) names += (names.empty() ? "" : ", ") + part;
  throw std::runtime_error("module '" + m.name + "' has tensors " + names + ", which make no LoRA, LoHa or LoKr");
}

// An uninitialised CPU tensor in an anonymous map of its own, for merged weights: freeing it returns its
// memory at once. From glibc's heap, gigabytes of freed weights would stay resident through a LoRA
// switch (blocks below its mmap threshold, which rises to 32 MB as big blocks are freed, are kept).
at::Tensor mapped_empty(at::IntArrayRef sizes, at::ScalarType dtype) {
  const size_t bytes = std::max<size_t>(1, c10::multiply_integers(sizes) * c10::elementSize(dtype));
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) throw std::runtime_error("out of memory for a " + std::to_string(bytes) + "-byte LoRA weight");
  return torch::from_blob(data, sizes, [bytes](void* p) { munmap(p, bytes); }, at::TensorOptions().dtype(dtype));
}

// W0 + Σ factor · ΔW, in fp32 on the parameter's device, cast to its dtype. A plain LoRA adds its
// up @ down inside one GEMM (addmm): each layer is read and written once, with no ΔW-sized temporary.
at::Tensor merged(const at::Tensor& original, const std::vector<const Module*>& modules, const at::TensorOptions& p) {
  const at::Device d = p.device();
  const bool cpu = d.is_cpu();
  const at::Tensor w0 = original.to(d, at::kFloat).reshape({original.size(0), -1});
  at::Tensor w;  // [out, in * k * k]
  for (const Module* m : modules) {
    const bool first = !w.defined();
    if (first) w = cpu ? mapped_empty(w0.sizes(), at::kFloat) : at::empty_like(w0);
    if (auto [down, up] = m->lora(); down && !m->has("lora_mid.weight")) {
      auto u = m->get(up, d).flatten(1), v = m->get(down, d).flatten(1);
      first ? at::addmm_out(w, w0, u, v, 1.0, m->factor) : w.addmm_(u, v, 1.0, m->factor);
      continue;
    }
    int64_t rank = 0;
    at::Tensor dw = delta(*m, d, rank).reshape(w0.sizes());
    first ? at::add_out(w, w0, dw, m->factor) : w.add_(dw, m->factor);
  }
  w = w.view(original.sizes());
  if (p.dtype() == at::kFloat) return w;
  return cpu ? mapped_empty(w.sizes(), p.dtype().toScalarType()).copy_(w) : w.to(p.dtype().toScalarType());
}

// One file of the request, read and grouped into modules.
struct LoraFile {
  LoraRequest request;
  TensorFile file;
  std::vector<Module> modules;
  std::vector<std::string> stray;  // tensors that belong to no module
};

LoraFile read_lora(const LoraRequest& request) {
  LoraFile out{request, load_tensor_file(request.path), {}, {}};
  const std::string& path = request.path;
  std::map<std::string, size_t> by_name;
  for (const auto& [key, tensor] : out.file.tensors) {
    std::string part;
    for (const char* p : kParts)
      if (ends(key, std::string(".") + p) && std::strlen(p) > part.size()) part = p;
    for (const auto& [p, kind] : kUnsupported)
      if (ends(key, std::string(".") + p) || contains(key, (std::string(".") + p + ".").c_str()))
        throw std::runtime_error("'" + path + "' is a " + kind + " network (tensor '" + key +
                                 "'), which sdtorch does not apply; LoRA, LoCon, LoHa and LoKr files are supported");
    if (part.empty()) {
      out.stray.push_back(key);
      continue;
    }
    if (!tensor.is_floating_point()) throw std::runtime_error("'" + path + "': tensor '" + key + "' is not floating point");
    const std::string name = key.substr(0, key.size() - part.size() - 1);
    auto [it, fresh] = by_name.emplace(name, out.modules.size());
    if (fresh) out.modules.push_back(Module{name, {}, {}, 0, 0});
    out.modules[it->second].parts[part] = tensor;
  }
  // diffusers/PEFT files keep alpha in their metadata (per component, with per-module exceptions).
  auto meta = out.file.metadata.find("lora_adapter_metadata");
  if (meta != out.file.metadata.end()) {
    try {
      json::Value v = json::parse(meta->second.data(), meta->second.size());
      for (auto& m : out.modules) {
        const std::string component = m.name.substr(0, m.name.find('.'));
        const json::Value* alpha = v.find(component + ".lora_alpha");
        if (const json::Value* pattern = v.find(component + ".alpha_pattern"))
          for (const auto& [suffix, a] : pattern->members)
            if (ends(m.name, "." + suffix) && a.kind == json::Value::Number) alpha = &a;
        if (alpha && alpha->kind == json::Value::Number) m.alpha = alpha->number;
      }
    } catch (const std::exception&) {
      // Unreadable adapter metadata: fall back to alpha = rank, as diffusers does without metadata.
    }
  }
  return out;
}

// What a file that does not fit the model seems to be made for, from its names and shapes.
struct Guess {
  std::string what;       // "an SDXL LoRA (...)"; empty when nothing stands out
  int64_t context = 0;    // width of the text context its cross-attention takes (0: unknown)
  int64_t te_width = 0;   // width of its text encoder (0: unknown)
};

Guess guess(const LoraFile& f) {
  Guess g;
  for (const auto& m : f.modules) {
    const std::string& n = m.name;
    if (starts(n, "lora_te2_") || starts(n, "text_encoder_2.") || contains(n, "conditioner"))
      g.what = "an SDXL LoRA (it adapts a second text encoder)";
    if (g.what.empty() && (contains(n, "double_blocks") || contains(n, "single_blocks") || contains(n, "single_transformer_blocks") ||
                           contains(n, "joint_blocks") || starts(n, "lora_transformer_") || starts(n, "transformer.")))
      g.what = "a LoRA for a diffusion transformer (SD3, Flux or similar), not for a UNet";
    int64_t rank = 0;
    auto width = [&]() -> int64_t {
      try {
        at::Tensor s = delta(m, at::kMeta, rank);
        return s.dim() >= 2 ? s.size(1) : 0;
      } catch (const std::exception&) {
        return 0;
      }
    };
    if (!g.context && (ends(n, "attn2_to_k") || ends(n, "attn2.to_k") || ends(n, "attn2.processor.to_k_lora"))) g.context = width();
    if (!g.te_width && (starts(n, "lora_te_") || starts(n, "lora_te1_") || starts(n, "text_encoder.")) && contains(n, "q_proj"))
      g.te_width = width();
  }
  if (g.what.empty() && (g.context == 2048 || g.te_width == 1280)) g.what = "an SDXL LoRA (2048-wide text context)";
  if (g.what.empty() && (g.context == 1024 || g.te_width == 1024)) g.what = "an SD 2.x LoRA (1024-wide OpenCLIP text context)";
  return g;
}

// Where the names of LoRA files point: "unet:" / "te1:" / "te2:" + a module path with '_' for '.',
// relative to the UNet and to the text encoder's prefix (`cond_stage_model.transformer.`,
// `conditioner.embedders.N.transformer.`) -> the parameter's file key. Built from the model's own
// weights, so both spellings of kohya's flattened names land on the same layer. SDXL's encoders are
// te1 (CLIP ViT-L) and te2 (OpenCLIP bigG), as kohya (lora_te1_/lora_te2_) and diffusers
// (text_encoder./text_encoder_2.) number them; a one-encoder model's is te1.
class Resolver {
 public:
  Resolver(const StableDiffusion& sd, std::unordered_map<std::string, at::Tensor>& params) : unet_(sd.family.unet) {
    auto add = [&](const nn::Module& net, const std::string& prefix, const std::string& component, const std::string& under) {
      for (const auto& p : net.named_parameters()) {
        const std::string key = prefix + p.key();
        params.emplace(key, p.value());
        if (ends(p.key(), ".weight") && (p.value().dim() == 2 || p.value().dim() == 4))
          index_.emplace(component + ":" + underscored(under + p.key().substr(0, p.key().size() - 7)), key);
      }
    };
    add(*sd.unet, kUNetPrefix, "unet", "");
    for (size_t i = 0; i < sd.text_encoders.size(); ++i) {
      const ClipTextModel& te = sd.text_encoders[i];
      add(*te, te->config.prefix, "te" + std::to_string(i + 1), "");
      prefixes_.emplace_back(te->config.prefix, "te" + std::to_string(i + 1));
    }
  }

  std::optional<std::string> operator()(std::string name) const {
    if (starts(name, "lora_unet_")) return unet(name.substr(10));
    if (starts(name, "lora_te_")) return find("te1", name.substr(8));
    if (starts(name, "lora_te1_")) return find("te1", name.substr(9));  // SDXL's first; some SD 1.x trainers number their one encoder
    if (starts(name, "lora_te2_")) return find("te2", name.substr(9));
    if (starts(name, kUNetPrefix)) return find("unet", name.substr(std::strlen(kUNetPrefix)));
    for (const auto& [prefix, te] : prefixes_)
      if (starts(name, prefix)) return find(te, name.substr(prefix.size()));
    // diffusers and PEFT: dotted module paths under "unet." / "text_encoder." / "text_encoder_2.", in
    // older files with attention processors ("attn1.processor.to_q_lora") or "lora_linear_layer" in between.
    std::string te_name;
    if (starts(name, "text_encoder_2.")) te_name = "te2", name = name.substr(15);
    else if (starts(name, "text_encoder.")) te_name = "te1", name = name.substr(13);
    else if (starts(name, "unet.")) name = name.substr(5);
    const bool te = !te_name.empty();
    for (const std::string cut : {".processor", ".lora_linear_layer"})
      for (size_t at; (at = name.find(cut)) != std::string::npos;) name.erase(at, cut.size());
    static const std::pair<std::string, std::string> unet_old[] = {
        {"to_q_lora", "to_q"}, {"to_k_lora", "to_k"}, {"to_v_lora", "to_v"}, {"to_out_lora", "to_out.0"}};
    static const std::pair<std::string, std::string> te_old[] = {
        {"to_q_lora", "q_proj"}, {"to_k_lora", "k_proj"}, {"to_v_lora", "v_proj"}, {"to_out_lora", "out_proj"}};
    for (const auto& [from, to] : te ? te_old : unet_old)
      if (ends(name, "." + from)) name = name.substr(0, name.size() - from.size()) + to;
    if (!te) return unet(name);
    // transformers 5 names CLIP's modules without the "text_model." that older files carry
    if (auto found = find(te_name, name)) return found;
    return find(te_name, "text_model." + name);
  }

 private:
  std::optional<std::string> unet(const std::string& path) const {
    if (auto ldm = diffusers_unet_to_ldm(path, unet_)) return find("unet", *ldm);
    return find("unet", path);  // LDM's own names
  }
  std::optional<std::string> find(const std::string& component, const std::string& path) const {
    auto it = index_.find(component + ":" + underscored(path));
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  const UNetConfig& unet_;
  std::unordered_map<std::string, std::string> index_;
  std::vector<std::pair<std::string, std::string>> prefixes_;  // text encoder file prefix -> "te1", "te2"
};

std::string describe_non_lora(const TensorFile& f) {
  const std::string kind = checkpoint_kind(f);
  if (kind == "sd1") return "a full SD 1.x checkpoint (load it with loadPipeline)";
  if (kind == "sd1-inpaint") return "a full SD 1.x inpainting checkpoint";
  if (kind == "sd2") return "a full SD 2.x checkpoint";
  if (kind == "sdxl") return "a full SDXL checkpoint";
  if (kind == "vae") return "a VAE";
  if (kind == "unet") return "a UNet alone";
  return "no LoRA: it has no lora_up/lora_down, lora_A/lora_B, hada_ or lokr_ tensors";
}

// The file's identity for the "same set again" test: a rewritten file is read again.
std::string signature_of(const std::vector<LoraRequest>& loras) {
  std::string s;
  for (const auto& l : loras) {
    struct stat st {};
    if (stat(l.path.c_str(), &st) != 0) return "";  // let reading it report the error
    char buf[160];
    std::snprintf(buf, sizeof buf, "\n%lld %lld.%09ld %.17g ", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                  (long)st.st_mtim.tv_nsec, l.multiplier);
    s += l.path + '\0' + l.name + buf;
  }
  return s;
}

// A parameter back to the checkpoint's tensor, as loading made it: the file's memory itself when the
// dtype matches on CPU, else the same conversion (so the bits are those of the first load).
void restore(at::Tensor& p, const at::Tensor& original) {
  p.set_data(original.scalar_type() == p.scalar_type() && p.device().is_cpu() ? original
                                                                              : original.to(p.device(), p.scalar_type()).contiguous());
}

}  // namespace

std::vector<LoraReport> set_loras(StableDiffusion& sd, const std::vector<LoraRequest>& loras, WeightCounts* counts) {
  std::unique_lock lock(sd.weights_mutex);
  std::unordered_map<std::string, at::Tensor> params;
  Resolver resolve(sd, params);
  auto count = [&] {
    if (!counts) return;
    *counts = {};
    for (const auto& [key, original] : sd.originals) {
      const at::Tensor& p = params.at(key);
      counts->total++;
      counts->patched += sd.loras.patched.count(key);
      counts->mapped += p.device().is_cpu() && p.data_ptr() == original.data_ptr();
    }
  };
  const std::string signature = signature_of(loras);
  if (!signature.empty() && signature == sd.loras.signature) {
    count();
    return sd.loras.reports;
  }

  // 1. Read and check every file; nothing changes until all of them fit.
  std::vector<LoraFile> files;
  files.reserve(loras.size());  // the plan points into their modules
  std::vector<LoraReport> reports;
  std::map<std::string, std::vector<const Module*>> plan;  // parameter -> modules adding to it
  const std::string model = sd.family.label;
  for (const auto& request : loras) {
    files.push_back(read_lora(request));
    LoraFile& f = files.back();
    const std::string& path = request.path;
    if (f.modules.empty()) throw std::runtime_error("'" + path + "' is not a LoRA: it looks like " + describe_non_lora(f.file));
    const Guess g = guess(f);
    const bool other_context = g.context && g.context != sd.family.unet.context;
    const bool other_te = g.te_width && g.te_width != sd.family.text_encoders.front().width;
    const bool sdxl = sd.family.text_encoders.size() > 1;
    // The width of the text context its cross-attention takes tells the family apart (SD 1.x 768, SD 2.x 1024, SDXL 2048).
    const std::string what = !g.what.empty() ? g.what
                             : "a LoRA for a model with a " + std::to_string(g.context) + "-wide text context (SD 1.x: 768, SD 2.x: 1024, SDXL: 2048)";
    if (other_context || (!g.what.empty() && (other_te || (starts(g.what, "an SDXL") && !sdxl) || starts(g.what, "a LoRA for a diffusion"))))
      throw std::runtime_error("'" + path + "' looks like " + what + "; this model is " + model +
                               " (" + std::to_string(sd.family.unet.context) + "-wide context), and a LoRA only fits the model family it was trained for");
    LoraReport report{request.name, 0, f.stray};
    for (auto& m : f.modules) {
      auto target = resolve(m.name);
      if (!target) {
        report.unmatched.push_back(m.name);
        continue;
      }
      m.target = *target;
      const at::Tensor& p = params.at(m.target);
      int64_t rank = 0;
      at::Tensor shape;
      try {
        shape = delta(m, at::kMeta, rank);
      } catch (const std::exception& e) {
        throw std::runtime_error("'" + path + "': " + message(e));
      }
      if (shape.numel() != p.numel()) {
        // A conv update comes as [out, in * k * k]: say it in the layer's terms.
        std::vector<int64_t> s = shape.sizes().vec();
        if (p.dim() == 4 && s.size() == 2 && s[1] % (p.size(2) * p.size(3)) == 0) s = {s[0], s[1] / (p.size(2) * p.size(3)), p.size(2), p.size(3)};
        throw std::runtime_error("'" + path + "': module '" + m.name + "' makes a " + shape_str(s) + " update for layer '" +
                                 m.target + "', which is " + shape_str(p.sizes()) + "; the file was made for another model" +
                                 (g.what.empty() ? "" : " (it looks like " + g.what + ")") + ", this one is " + model);
      }
      // scale = alpha / rank (kohya, LyCORIS), or an explicit "scale"; no alpha: alpha = rank.
      double scale = 1.0;
      if (m.has("scale")) scale = m.parts.at("scale").item<double>();
      else if (m.has("alpha") && rank > 0) scale = m.parts.at("alpha").item<double>() / double(rank);
      else if (m.alpha > 0 && rank > 0) scale = m.alpha / double(rank);
      m.factor = request.multiplier * scale;
      report.modules++;
      if (request.multiplier != 0) plan[m.target].push_back(&m);
    }
    if (report.modules == 0) {
      std::string examples;
      for (size_t i = 0; i < report.unmatched.size() && i < 3; ++i) examples += (i ? ", '" : "'") + report.unmatched[i] + "'";
      throw std::runtime_error("'" + path + "': none of its " + std::to_string(f.modules.size()) + " modules (" + examples +
                               (report.unmatched.size() > 3 ? ", ..." : "") + ") names a layer of the model (" + model +
                               "); it looks like " + (g.what.empty() ? "a LoRA for another model" : g.what));
    }
    reports.push_back(std::move(report));
  }

  // 2. Every parameter that had or gets a LoRA: recomputed from the original, never from its last sum.
  const std::set<std::string> was = sd.loras.patched;
  std::set<std::string> touched = was, patched;
  for (const auto& [key, modules] : plan) touched.insert(key);
  sd.loras = {};  // a failure below leaves no claim about the weights
  try {
    for (const auto& key : touched) {
      at::Tensor& p = params.at(key);
      const at::Tensor& original = sd.originals.at(key);
      auto it = plan.find(key);
      if (it == plan.end()) {
        restore(p, original);
        continue;
      }
      const at::TensorOptions options = p.options();
      // The old sum goes before the new one is made: on CPU the allocator can then reuse its memory.
      if (was.count(key)) p.set_data(at::empty({0}, options));
      p.set_data(merged(original, it->second, options));
      patched.insert(key);
      release_pages(original);  // read once for the sum; resident again only when restored and used
    }
  } catch (...) {
    for (const auto& key : touched) {
      try {
        restore(params.at(key), sd.originals.at(key));
      } catch (...) {
        // Out of memory twice over: the next set_loras restores what is left.
        sd.loras.patched.insert(key);
      }
    }
    drop_prepacked(*sd.unet);
    trim_heap();
    throw;
  }
  drop_prepacked(*sd.unet);
  trim_heap();  // the merge's temporaries (fp32 factors, ΔW) go back to the system
  sd.loras = LoraSet{signature, reports, patched};
  count();
  return reports;
}

}  // namespace sdtorch
