#include "compress/core/model_spec.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "compress/core/error.h"

namespace slmc {

namespace {
struct FamilyRow {
  Family family;
  const char* name;
};
constexpr FamilyRow kFamilies[] = {
    {Family::kLlama, "llama"},   {Family::kMistral, "mistral"}, {Family::kQwen2, "qwen2"},
    {Family::kPhi3, "phi3"},     {Family::kGemma3, "gemma3_text"},
    {Family::kOpenELM, "openelm"}, {Family::kMixtral, "mixtral"},
};
struct ActRow {
  Activation act;
  const char* name;
};
constexpr ActRow kActs[] = {{Activation::kSilu, "silu"}, {Activation::kGeluTanh, "gelu_pytorch_tanh"}};
}  // namespace

const char* family_name(Family f) {
  for (const auto& r : kFamilies)
    if (r.family == f) return r.name;
  return "?";
}
bool family_from_name(const std::string& name, Family* out) {
  for (const auto& r : kFamilies)
    if (name == r.name) {
      *out = r.family;
      return true;
    }
  return false;
}
const char* activation_name(Activation a) {
  for (const auto& r : kActs)
    if (r.act == a) return r.name;
  return "?";
}
bool activation_from_name(const std::string& name, Activation* out) {
  for (const auto& r : kActs)
    if (name == r.name) {
      *out = r.act;
      return true;
    }
  return false;
}

void ModelSpec::validate() const {
  SLMC_CHECK(vocab > 0, "model spec: vocab must be > 0, got ", vocab);
  SLMC_CHECK(d_model > 0, "model spec: d_model must be > 0, got ", d_model);
  SLMC_CHECK(max_seq > 0, "model spec: max_seq must be > 0, got ", max_seq);
  SLMC_CHECK(!layers.empty(), "model spec: no layers");
  SLMC_CHECK(norm_eps > 0 && norm_eps < 1, "model spec: norm_eps out of range: ", norm_eps);
  SLMC_CHECK(rope_scaling.type == "none" || rope_scaling.type == "llama3" ||
                 rope_scaling.type == "linear",
             "model spec: unsupported rope scaling type '", rope_scaling.type, "'");
  if (rope_scaling.type == "linear")
    SLMC_CHECK(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor),
               "model spec: linear rope scaling factor must be > 0, got ", rope_scaling.factor);
  SLMC_CHECK(embed_scale > 0 && std::isfinite(embed_scale), "model spec: embed_scale must be > 0, got ",
             embed_scale);
  if (rope_scaling.type == "llama3") {
    SLMC_CHECK(rope_scaling.factor >= 1 && rope_scaling.low_freq_factor > 0 &&
                   rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                   rope_scaling.original_max_position > 0,
               "model spec: inconsistent llama3 rope scaling (factor ", rope_scaling.factor,
               ", low_freq_factor ", rope_scaling.low_freq_factor, ", high_freq_factor ",
               rope_scaling.high_freq_factor, ")");
  }
  SLMC_CHECK(bos_id < vocab && eos_id < vocab, "model spec: bos_id ", bos_id, " / eos_id ", eos_id,
             " out of vocab ", vocab);
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& l = layers[i];
    SLMC_CHECK(l.n_head > 0 && l.n_kv_head > 0 && l.head_dim > 0 && l.ffn_dim > 0,
               "model spec: layer ", i, " has a non-positive dim (n_head ", l.n_head,
               ", n_kv_head ", l.n_kv_head, ", head_dim ", l.head_dim, ", ffn_dim ", l.ffn_dim, ")");
    SLMC_CHECK(l.n_head % l.n_kv_head == 0, "model spec: layer ", i, ": n_head ", l.n_head,
               " is not a multiple of n_kv_head ", l.n_kv_head);
    SLMC_CHECK(l.head_dim % 2 == 0, "model spec: layer ", i, ": head_dim ", l.head_dim,
               " must be even for RoPE");
    SLMC_CHECK(l.window >= 0, "model spec: layer ", i, ": negative window ", l.window);
    SLMC_CHECK(l.rope_theta > 0, "model spec: layer ", i, ": rope_theta ", l.rope_theta);
    SLMC_CHECK(l.attn_scale >= 0 && std::isfinite(l.attn_scale), "model spec: layer ", i,
               ": attn_scale ", l.attn_scale);
    SLMC_CHECK(l.n_expert >= 0 && l.n_expert <= 4096, "model spec: layer ", i, ": n_expert ",
               l.n_expert, " outside [0, 4096]");
    if (l.n_expert > 0)
      SLMC_CHECK(l.n_expert_used >= 1 && l.n_expert_used <= l.n_expert, "model spec: layer ", i,
                 ": n_expert_used ", l.n_expert_used, " must be in [1, n_expert ", l.n_expert, "]");
    else
      SLMC_CHECK(l.n_expert_used == 0, "model spec: layer ", i, ": n_expert_used ",
                 l.n_expert_used, " without experts");
    SLMC_CHECK(!(l.is_moe() && l.mlp_bias), "model spec: layer ", i,
               ": MLP biases are not supported with experts");
  }
}

double LayerSpec::softmax_scale() const {
  return attn_scale > 0 ? attn_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

int64_t ModelSpec::n_params() const {
  int64_t n = vocab * d_model + d_model;  // embedding + final norm
  if (!tied_embeddings) n += vocab * d_model;
  for (const LayerSpec& l : layers) {
    const int64_t q = l.n_head * l.head_dim, kv = l.n_kv_head * l.head_dim;
    n += 2 * d_model;                            // two norms
    n += d_model * (q + 2 * kv) + q * d_model;   // q, k, v, o
    if (l.attn_qkv_bias) n += q + 2 * kv;
    if (l.attn_out_bias) n += d_model;
    const int64_t experts = l.is_moe() ? l.n_expert : 1;
    n += experts * 3 * d_model * l.ffn_dim;      // gate, up, down (per expert)
    if (l.is_moe()) n += l.n_expert * d_model;   // router
    if (l.mlp_bias) n += 2 * l.ffn_dim + d_model;
    if (l.qk_norm) n += 2 * l.head_dim;
    if (l.post_norms) n += 2 * d_model;
  }
  return n;
}

std::string ModelSpec::to_json() const {
  nlohmann::json j;
  j["family"] = family_name(family);
  j["vocab"] = vocab;
  j["d_model"] = d_model;
  j["max_seq"] = max_seq;
  j["norm_eps"] = norm_eps;
  j["tied_embeddings"] = tied_embeddings;
  j["act"] = activation_name(act);
  j["bos_id"] = bos_id;
  j["eos_id"] = eos_id;
  j["embed_scale"] = embed_scale;
  j["rope_scaling"] = {{"type", rope_scaling.type},
                       {"factor", rope_scaling.factor},
                       {"low_freq_factor", rope_scaling.low_freq_factor},
                       {"high_freq_factor", rope_scaling.high_freq_factor},
                       {"original_max_position", rope_scaling.original_max_position}};
  nlohmann::json ls = nlohmann::json::array();
  for (const LayerSpec& l : layers) {
    ls.push_back({{"n_head", l.n_head},
                  {"n_kv_head", l.n_kv_head},
                  {"head_dim", l.head_dim},
                  {"ffn_dim", l.ffn_dim},
                  {"attn_qkv_bias", l.attn_qkv_bias},
                  {"attn_out_bias", l.attn_out_bias},
                  {"mlp_bias", l.mlp_bias},
                  {"window", l.window},
                  {"rope_theta", l.rope_theta},
                  {"rope_scaled", l.rope_scaled},
                  {"qk_norm", l.qk_norm},
                  {"post_norms", l.post_norms},
                  {"attn_scale", l.attn_scale},
                  {"n_expert", l.n_expert},
                  {"n_expert_used", l.n_expert_used}});
  }
  j["layers"] = ls;
  return j.dump();
}

ModelSpec ModelSpec::from_json(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": model spec is not valid JSON: ", e.what());
  }
  ModelSpec s;
  try {
    const std::string fam = j.at("family").get<std::string>();
    SLMC_CHECK(family_from_name(fam, &s.family), origin, ": unknown family '", fam, "'");
    const std::string act = j.at("act").get<std::string>();
    SLMC_CHECK(activation_from_name(act, &s.act), origin, ": unknown act '", act, "'");
    s.vocab = j.at("vocab").get<int64_t>();
    s.d_model = j.at("d_model").get<int64_t>();
    s.max_seq = j.at("max_seq").get<int64_t>();
    s.norm_eps = j.at("norm_eps").get<double>();
    s.tied_embeddings = j.at("tied_embeddings").get<bool>();
    s.bos_id = j.at("bos_id").get<int64_t>();
    s.eos_id = j.at("eos_id").get<int64_t>();
    // Keys added after the first .slm files were written: absent means the old meaning.
    s.embed_scale = j.value("embed_scale", 1.0);
    const auto& rs = j.at("rope_scaling");
    s.rope_scaling.type = rs.at("type").get<std::string>();
    s.rope_scaling.factor = rs.at("factor").get<double>();
    s.rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<double>();
    s.rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<double>();
    s.rope_scaling.original_max_position = rs.at("original_max_position").get<int64_t>();
    for (const auto& l : j.at("layers")) {
      LayerSpec ls;
      ls.n_head = l.at("n_head").get<int64_t>();
      ls.n_kv_head = l.at("n_kv_head").get<int64_t>();
      ls.head_dim = l.at("head_dim").get<int64_t>();
      ls.ffn_dim = l.at("ffn_dim").get<int64_t>();
      ls.attn_qkv_bias = l.at("attn_qkv_bias").get<bool>();
      ls.attn_out_bias = l.at("attn_out_bias").get<bool>();
      ls.mlp_bias = l.at("mlp_bias").get<bool>();
      ls.window = l.at("window").get<int64_t>();
      ls.rope_theta = l.at("rope_theta").get<double>();
      ls.rope_scaled = l.value("rope_scaled", true);
      ls.qk_norm = l.value("qk_norm", false);
      ls.post_norms = l.value("post_norms", false);
      ls.attn_scale = l.value("attn_scale", 0.0);
      ls.n_expert = l.value("n_expert", int64_t{0});
      ls.n_expert_used = l.value("n_expert_used", int64_t{0});
      s.layers.push_back(ls);
    }
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": model spec: ", e.what());
  }
  s.validate();
  return s;
}

ModelSpec make_uniform_spec(Family family, int64_t vocab, int64_t d_model, int64_t n_layer,
                            int64_t n_head, int64_t n_kv_head, int64_t ffn_dim, int64_t max_seq,
                            double rope_theta) {
  ModelSpec s;
  s.family = family;
  s.vocab = vocab;
  s.d_model = d_model;
  s.max_seq = max_seq;
  SLMC_CHECK(n_head > 0 && d_model % n_head == 0, "model shape: d_model ", d_model,
             " is not a multiple of n_head ", n_head);
  for (int64_t i = 0; i < n_layer; ++i) {
    LayerSpec l;
    l.n_head = n_head;
    l.n_kv_head = n_kv_head;
    l.head_dim = d_model / n_head;
    l.ffn_dim = ffn_dim;
    l.rope_theta = rope_theta;
    s.layers.push_back(l);
  }
  return s;
}

}  // namespace slmc
