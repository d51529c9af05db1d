#include "models/diffusers_names.h"

#include <regex>
#include <utility>

namespace sdtorch {
namespace {

bool starts(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// A resnet's tail in diffusers' names -> LDM's ResBlock names (".conv1.weight" -> ".in_layers.2.weight").
std::string resnet_tail(const std::string& tail) {
  static const std::pair<std::string, std::string> renames[] = {
      {"conv1", "in_layers.2"}, {"conv2", "out_layers.3"},          {"norm1", "in_layers.0"},
      {"norm2", "out_layers.0"}, {"time_emb_proj", "emb_layers.1"}, {"conv_shortcut", "skip_connection"}};
  if (tail.empty()) return tail;
  const std::string rest = tail.substr(1);
  for (const auto& [from, to] : renames)
    if (starts(rest, from) && (rest.size() == from.size() || rest[from.size()] == '.' || rest[from.size()] == '_'))
      return tail[0] + to + rest.substr(from.size());
  return tail;
}

}  // namespace

std::optional<std::string> diffusers_unet_to_ldm(const std::string& path, const UNetConfig& c) {
  // [._] everywhere: kohya writes the same names with '_' for '.'. The last group is the rest of the
  // path (a module inside the block, a parameter), kept as written.
  static const std::regex conv_in(R"(conv_in([._].*)?)"), conv_out(R"(conv_out([._].*)?)"),
      norm_out(R"(conv_norm_out([._].*)?)"), time(R"(time_embedding[._]linear_([12])([._].*)?)"),
      add_embedding(R"(add_embedding[._]linear_([12])([._].*)?)"),
      down(R"(down_blocks[._](\d+)[._](resnets|attentions)[._](\d+)([._].*)?)"),
      downsample(R"(down_blocks[._](\d+)[._]downsamplers[._]0[._]conv([._].*)?)"),
      mid(R"(mid_block[._](resnets|attentions)[._](\d+)([._].*)?)"),
      up(R"(up_blocks[._](\d+)[._](resnets|attentions)[._](\d+)([._].*)?)"),
      upsample(R"(up_blocks[._](\d+)[._]upsamplers[._]0[._]conv([._].*)?)");
  const int64_t levels = int64_t(c.mult.size()), per = c.res_blocks + 1;  // LDM blocks per level
  auto num = [](const std::ssub_match& m) { return m.length() > 6 ? int64_t(-1) : int64_t(std::stoll(m.str())); };
  auto at = [](int64_t block, int64_t layer) { return std::to_string(block) + "." + std::to_string(layer); };
  std::smatch m;
  if (std::regex_match(path, m, conv_in)) return "input_blocks.0.0" + m[1].str();
  if (std::regex_match(path, m, conv_out)) return "out.2" + m[1].str();
  if (std::regex_match(path, m, norm_out)) return "out.0" + m[1].str();
  if (std::regex_match(path, m, time)) return "time_embed." + std::to_string(2 * (num(m[1]) - 1)) + m[2].str();
  if (std::regex_match(path, m, add_embedding) && c.adm_in > 0) return "label_emb.0." + std::to_string(2 * (num(m[1]) - 1)) + m[2].str();
  if (std::regex_match(path, m, down)) {
    // Level i holds res_blocks (resnet, attention) pairs, then a downsampler in a block of its own.
    const int64_t i = num(m[1]), j = num(m[3]);
    const bool attention = m[2] == "attentions";
    if (i < 0 || i >= levels || j < 0 || j >= c.res_blocks || (attention && c.depth[i] == 0)) return std::nullopt;
    return "input_blocks." + at(1 + i * per + j, attention ? 1 : 0) + (attention ? m[4].str() : resnet_tail(m[4].str()));
  }
  if (std::regex_match(path, m, downsample)) {
    const int64_t i = num(m[1]);
    if (i < 0 || i + 1 >= levels) return std::nullopt;
    return "input_blocks." + at((i + 1) * per, 0) + ".op" + m[2].str();
  }
  if (std::regex_match(path, m, mid)) {
    // middle_block = resnet 0, attention 0, resnet 1.
    const int64_t j = num(m[2]);
    const bool attention = m[1] == "attentions";
    if (attention ? j != 0 : (j < 0 || j > 1)) return std::nullopt;
    return "middle_block." + std::to_string(attention ? 1 : 2 * j) + (attention ? m[3].str() : resnet_tail(m[3].str()));
  }
  if (std::regex_match(path, m, up)) {
    // Up block i is level levels-1-i: res_blocks + 1 blocks of (resnet, attention?, upsampler?).
    const int64_t i = num(m[1]), j = num(m[3]);
    const bool attention = m[2] == "attentions";
    if (i < 0 || i >= levels || j < 0 || j > c.res_blocks || (attention && c.depth[levels - 1 - i] == 0)) return std::nullopt;
    return "output_blocks." + at(i * per + j, attention ? 1 : 0) + (attention ? m[4].str() : resnet_tail(m[4].str()));
  }
  if (std::regex_match(path, m, upsample)) {
    // The upsampler closes the level's last block, after its attention when the level has one.
    const int64_t i = num(m[1]);
    if (i < 0 || i + 1 >= levels) return std::nullopt;
    return "output_blocks." + at(i * per + c.res_blocks, c.depth[levels - 1 - i] > 0 ? 2 : 1) + ".conv" + m[2].str();
  }
  return std::nullopt;
}


std::optional<std::string> diffusers_vae_to_ldm(const std::string& path, const VaeConfig& c) {
  static const std::regex block(R"((encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*))"),
      resample(R"((encoder|decoder)\.(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv\.(.*))"),
      mid_res(R"((encoder|decoder)\.mid_block\.resnets\.([01])\.(.*))"),
      mid_attn(R"((encoder|decoder)\.mid_block\.attentions\.0\.(.*))"),
      norm_out(R"((encoder|decoder)\.conv_norm_out\.(.*))");
  const int64_t levels = int64_t(c.mult.size());
  // diffusers numbers the decoder's up blocks from the bottom, LDM from the top.
  auto level = [&](const std::string& side, const std::string& n) -> int64_t {
    const int64_t i = n.size() > 6 ? -1 : std::stoll(n);
    return i < 0 || i >= levels ? -1 : side == "up" ? levels - 1 - i : i;
  };
  auto resnet = [](std::string tail) { return starts(tail, "conv_shortcut.") ? "nin_shortcut." + tail.substr(14) : tail; };
  std::smatch m;
  if (std::regex_match(path, m, block)) {
    const int64_t i = level(m[2], m[3]);
    if (i < 0 || (m[1] == "encoder") != (m[2] == "down")) return std::nullopt;
    return m[1].str() + "." + m[2].str() + "." + std::to_string(i) + ".block." + m[4].str() + "." + resnet(m[5]);
  }
  if (std::regex_match(path, m, resample)) {
    const int64_t i = level(m[2], m[3]);
    if (i < 0 || m[2] != m[4]) return std::nullopt;
    return m[1].str() + "." + m[2].str() + "." + std::to_string(i) + "." + m[4].str() + "sample.conv." + m[5].str();
  }
  if (std::regex_match(path, m, mid_res)) return m[1].str() + ".mid.block_" + (m[2] == "0" ? "1." : "2.") + resnet(m[3]);
  if (std::regex_match(path, m, mid_attn)) {
    // Current names (to_q, to_out.0, group_norm) and those of diffusers < 0.14 (query, proj_attn).
    static const std::pair<const char*, const char*> renames[] = {
        {"group_norm.", "norm."}, {"to_q.", "q."},     {"to_k.", "k."},   {"to_v.", "v."},
        {"to_out.0.", "proj_out."}, {"query.", "q."}, {"key.", "k."}, {"value.", "v."}, {"proj_attn.", "proj_out."}};
    const std::string tail = m[2];
    for (const auto& [from, to] : renames)
      if (starts(tail, from)) return m[1].str() + ".mid.attn_1." + to + tail.substr(std::char_traits<char>::length(from));
    return std::nullopt;
  }
  if (std::regex_match(path, m, norm_out)) return m[1].str() + ".norm_out." + m[2].str();
  // conv_in, conv_out, quant_conv, post_quant_conv: the same names in both.
  return std::nullopt;
}

}  // namespace sdtorch
