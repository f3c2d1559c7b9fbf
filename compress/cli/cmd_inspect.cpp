// slmc inspect MODEL: family, per-layer shapes, parameter count, bytes by dtype, tokenizer (kind,
// vocabulary size, BOS, EOS ids, control tokens).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/tensor_names.h"

namespace slmc::cli {

namespace {
struct InspectOptions {
  std::string model;
  std::string tokenizer;
  bool json = false;
};

// `id` with its token, e.g. `128000 "<|begin_of_text|>"`.
std::string id_and_piece(const Tokenizer& t, int32_t id) {
  if (id < 0 || id >= t.vocab_size()) return std::to_string(id);
  return std::to_string(id) + " " + nlohmann::json(t.piece(id)).dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json tokenizer_json(const Tokenizer& t) {
  const auto entry = [&](int32_t id) {
    return id < 0 ? nlohmann::json(nullptr) : nlohmann::json{{"id", id}, {"token", t.piece(id)}};
  };
  nlohmann::json eos = nlohmann::json::array();
  for (const int32_t id : t.eos_ids()) eos.push_back(entry(id));
  return {{"kind", t.kind()},         {"path", t.source()},   {"vocab", t.vocab_size()},
          {"bos", entry(t.bos_id())}, {"eos", eos},           {"special_tokens", t.special_ids().size()}};
}

// "bos 1 "<s>", eos 2 "</s>" 128009 "<|eot_id|>", 256 special tokens"
std::string specials_line(const Tokenizer& t) {
  std::string s = "bos " + (t.bos_id() >= 0 ? id_and_piece(t, t.bos_id()) : std::string("none"));
  s += ", eos";
  const std::vector<int32_t> eos = t.eos_ids();
  if (eos.empty()) s += " none";
  for (const int32_t id : eos) s += " " + id_and_piece(t, id);
  return s + ", " + std::to_string(t.special_ids().size()) + " special tokens";
}

void run_inspect(const InspectOptions& o) {
  const LoadedModel m = load_model(o.model);
  const ModelSpec& s = m.spec;
  auto tok = resolve_tokenizer(o.model, o.tokenizer, /*required=*/false);
  int64_t total_bytes = 0;
  for (const auto& kv : m.bytes_by_dtype) total_bytes += kv.second;
  if (o.json) {
    nlohmann::json j;
    j["path"] = m.path;
    j["format"] = m.format;
    j["spec"] = nlohmann::json::parse(s.to_json());
    j["n_params"] = s.n_params();
    j["bytes_by_dtype"] = m.bytes_by_dtype;
    j["bytes"] = total_bytes;
    j["tokenizer"] = tok ? tokenizer_json(*tok) : nlohmann::json(nullptr);
    nlohmann::json ts = nlohmann::json::array();
    for (const TensorDecl& d : expected_tensors(s)) ts.push_back({{"name", d.name}, {"shape", d.shape}});
    j["tensors"] = ts;
    // Replace, not throw on, malformed UTF-8 a token may hold.
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("%s (%s)\n", m.path.c_str(), m.format.c_str());
  std::printf("  family        %s\n", family_name(s.family));
  std::printf("  vocab         %lld\n", static_cast<long long>(s.vocab));
  std::printf("  d_model       %lld\n", static_cast<long long>(s.d_model));
  std::printf("  layers        %lld\n", static_cast<long long>(s.n_layer()));
  std::printf("  max_seq       %lld\n", static_cast<long long>(s.max_seq));
  std::printf("  norm_eps      %g\n", s.norm_eps);
  std::printf("  activation    %s\n", activation_name(s.act));
  std::printf("  embeddings    %s\n", s.tied_embeddings ? "tied (output = token_embd)" : "untied");
  std::printf("  rope scaling  %s", s.rope_scaling.type.c_str());
  if (s.rope_scaling.type != "none")
    std::printf(" (factor %g, low %g, high %g, original %lld)", s.rope_scaling.factor,
                s.rope_scaling.low_freq_factor, s.rope_scaling.high_freq_factor,
                static_cast<long long>(s.rope_scaling.original_max_position));
  std::printf("\n  tokenizer     %s\n",
              tok ? (tok->kind() + " " + tok->source() + " (vocab " +
                     std::to_string(tok->vocab_size()) + ")").c_str()
                  : "none found");
  if (tok) std::printf("  special       %s\n", specials_line(*tok).c_str());
  std::printf("  parameters    %lld (%.3f M)\n", static_cast<long long>(s.n_params()),
              static_cast<double>(s.n_params()) / 1e6);
  for (const auto& kv : m.bytes_by_dtype)
    std::printf("  bytes %-7s %lld\n", kv.first.c_str(), static_cast<long long>(kv.second));
  if (s.embed_scale != 1.0) std::printf("  embed scale   %g\n", s.embed_scale);
  std::printf("\n  layer  n_head  n_kv_head  head_dim  ffn_dim  window  rope_theta  bias(qkv,o,mlp)  experts  extras\n");
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const LayerSpec& l = s.layers[i];
    std::string extras;
    if (l.qk_norm) extras += "qk_norm ";
    if (l.post_norms) extras += "post_norms ";
    if (!l.rope_scaled && s.rope_scaling.type != "none") extras += "unscaled_rope ";
    if (l.attn_scale > 0) extras += "scale=" + std::to_string(l.attn_scale);
    const std::string experts = l.is_moe() ? std::to_string(l.n_expert_used) + "/" + std::to_string(l.n_expert) : "-";
    std::printf("  %5zu  %6lld  %9lld  %8lld  %7lld  %6lld  %10g  %d,%d,%d            %7s  %s\n", i,
                static_cast<long long>(l.n_head), static_cast<long long>(l.n_kv_head),
                static_cast<long long>(l.head_dim), static_cast<long long>(l.ffn_dim),
                static_cast<long long>(l.window), l.rope_theta, l.attn_qkv_bias, l.attn_out_bias,
                l.mlp_bias, experts.c_str(), extras.c_str());
  }
  std::printf("\n  %-28s %s\n", "tensor", "shape");
  for (const TensorDecl& d : expected_tensors(s))
    std::printf("  %-28s %s\n", d.name.c_str(), shape_str(d.shape).c_str());
}
}  // namespace

void setup_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  auto* sub = app.add_subcommand("inspect", "show a model's architecture, shapes and sizes");
  sub->add_option("model", o->model, "HF directory or llama2.c .bin")->required();
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer file (default: found beside the model)");
  sub->add_flag("--json", o->json, "machine-readable output on stdout");
  on_run(sub, [o] { run_inspect(*o); });
}

}  // namespace slmc::cli
