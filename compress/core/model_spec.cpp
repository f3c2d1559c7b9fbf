#include "compress/core/model_spec.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "compress/core/error.h"
#include "compress/core/json_util.h"

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
  using L = SpecLimits;
  SLMC_CHECK(vocab > 0 && vocab <= L::kMaxVocab, "model spec: vocab ", vocab, " is outside [1, ",
             L::kMaxVocab, "]");
  SLMC_CHECK(d_model > 0 && d_model <= L::kMaxDim, "model spec: d_model ", d_model,
             " is outside [1, ", L::kMaxDim, "]");
  SLMC_CHECK(max_seq > 0 && max_seq <= L::kMaxSeq, "model spec: max_seq ", max_seq,
             " is outside [1, ", L::kMaxSeq, "]");
  SLMC_CHECK(!layers.empty(), "model spec: no layers");
  SLMC_CHECK(n_layer() <= L::kMaxLayers, "model spec: ", n_layer(), " layers (at most ",
             L::kMaxLayers, ")");
  SLMC_CHECK(norm_eps > 0 && norm_eps < 1, "model spec: norm_eps out of range: ", norm_eps);
  SLMC_CHECK(rope_scaling.type == "none" || rope_scaling.type == "llama3" ||
                 rope_scaling.type == "linear",
             "model spec: unsupported rope scaling type '", rope_scaling.type.substr(0, 40), "'");
  if (rope_scaling.type == "linear")
    SLMC_CHECK(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor),
               "model spec: linear rope scaling factor must be > 0, got ", rope_scaling.factor);
  SLMC_CHECK(embed_scale > 0 && std::isfinite(embed_scale), "model spec: embed_scale must be > 0, got ",
             embed_scale);
  if (rope_scaling.type == "llama3") {
    SLMC_CHECK(rope_scaling.factor >= 1 && std::isfinite(rope_scaling.factor) &&
                   rope_scaling.low_freq_factor > 0 &&
                   rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                   std::isfinite(rope_scaling.high_freq_factor) &&
                   rope_scaling.original_max_position > 0 &&
                   rope_scaling.original_max_position <= L::kMaxSeq,
               "model spec: inconsistent llama3 rope scaling (factor ", rope_scaling.factor,
               ", low_freq_factor ", rope_scaling.low_freq_factor, ", high_freq_factor ",
               rope_scaling.high_freq_factor, ", original_max_position ",
               rope_scaling.original_max_position, ")");
  }
  SLMC_CHECK(bos_id >= -1 && bos_id < vocab && eos_id >= -1 && eos_id < vocab, "model spec: bos_id ",
             bos_id, " / eos_id ", eos_id, " out of vocab ", vocab, " (-1: none)");
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& l = layers[i];
    SLMC_CHECK(l.n_head > 0 && l.n_kv_head > 0 && l.head_dim > 0 && l.ffn_dim > 0,
               "model spec: layer ", i, " has a non-positive dim (n_head ", l.n_head,
               ", n_kv_head ", l.n_kv_head, ", head_dim ", l.head_dim, ", ffn_dim ", l.ffn_dim, ")");
    // Each product below is of two values <= 2^20 after the first checks, so it cannot overflow.
    SLMC_CHECK(l.n_head <= L::kMaxDim && l.head_dim <= L::kMaxDim && l.ffn_dim <= L::kMaxDim &&
                   l.n_head * l.head_dim <= L::kMaxDim,
               "model spec: layer ", i, ": n_head ", l.n_head, " x head_dim ", l.head_dim,
               " and ffn_dim ", l.ffn_dim, " must each be at most ", L::kMaxDim);
    SLMC_CHECK(l.n_head % l.n_kv_head == 0, "model spec: layer ", i, ": n_head ", l.n_head,
               " is not a multiple of n_kv_head ", l.n_kv_head);
    SLMC_CHECK(l.head_dim % 2 == 0, "model spec: layer ", i, ": head_dim ", l.head_dim,
               " must be even for RoPE");
    SLMC_CHECK(l.window >= 0, "model spec: layer ", i, ": negative window ", l.window);
    SLMC_CHECK(l.rope_theta > 0 && std::isfinite(l.rope_theta), "model spec: layer ", i,
               ": rope_theta ", l.rope_theta);
    SLMC_CHECK(l.attn_scale >= 0 && std::isfinite(l.attn_scale), "model spec: layer ", i,
               ": attn_scale ", l.attn_scale);
    SLMC_CHECK(l.n_expert >= 0 && l.n_expert <= L::kMaxExperts, "model spec: layer ", i,
               ": n_expert ", l.n_expert, " outside [0, ", L::kMaxExperts, "]");
    if (l.n_expert > 0)
      SLMC_CHECK(l.n_expert_used >= 1 && l.n_expert_used <= l.n_expert, "model spec: layer ", i,
                 ": n_expert_used ", l.n_expert_used, " must be in [1, n_expert ", l.n_expert, "]");
    else
      SLMC_CHECK(l.n_expert_used == 0, "model spec: layer ", i, ": n_expert_used ",
                 l.n_expert_used, " without experts");
    SLMC_CHECK(!(l.is_moe() && l.mlp_bias), "model spec: layer ", i,
               ": MLP biases are not supported with experts");
  }
  const int64_t n_tensors = min_tensor_count();
  int64_t max_expert = 0;
  for (const LayerSpec& l : layers) max_expert = std::max(max_expert, l.n_expert);
  SLMC_CHECK(n_tensors <= L::kMaxTensors, "model spec: key 'layers' holds ", n_layer(),
             " layers with n_expert up to ", max_expert, ": they imply at least ", n_tensors,
             " tensors (at most ", L::kMaxTensors, ")");
  // In double: the int64 count of n_params() is only safe below this bound.
  double params = 2.0 * static_cast<double>(vocab) * static_cast<double>(d_model);
  for (const LayerSpec& l : layers) {
    const double experts = static_cast<double>(std::max<int64_t>(l.n_expert, 1));
    params += static_cast<double>(d_model) *
              (2.0 * static_cast<double>((l.n_head + l.n_kv_head) * l.head_dim) +
               3.0 * experts * static_cast<double>(l.ffn_dim) + experts + 8.0);
  }
  SLMC_CHECK(params <= L::kMaxParams, "model spec: the shapes imply ", params,
             " weights (at most ", L::kMaxParams, ")");
}

int64_t ModelSpec::min_tensor_count() const {
  int64_t n = 2;  // embedding, final norm
  for (const LayerSpec& l : layers) n += 4 + 2 * std::max<int64_t>(1, l.n_expert);
  return n;
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
  using L = SpecLimits;
  const nlohmann::json j = checked_json::parse(text, origin);
  const checked_json::ObjectReader r(j, origin);
  ModelSpec s;
  const std::string fam = r.req_string("family");
  SLMC_CHECK(family_from_name(fam, &s.family), r.what("family"), ": unknown family ",
             checked_json::excerpt(r.at("family")));
  const std::string act = r.req_string("act");
  SLMC_CHECK(activation_from_name(act, &s.act), r.what("act"), ": unknown activation ",
             checked_json::excerpt(r.at("act")));
  s.vocab = r.req_int("vocab", 1, L::kMaxVocab);
  s.d_model = r.req_int("d_model", 1, L::kMaxDim);
  s.max_seq = r.req_int("max_seq", 1, L::kMaxSeq);
  s.norm_eps = r.req_number("norm_eps", 0, 1);
  s.tied_embeddings = r.req_bool("tied_embeddings");
  s.bos_id = r.req_int("bos_id", -1, L::kMaxVocab);
  s.eos_id = r.req_int("eos_id", -1, L::kMaxVocab);
  // Keys added after the first .slm files were written: absent means the old meaning.
  s.embed_scale = r.opt_number("embed_scale", 1.0, 0, 1e30);
  const checked_json::ObjectReader rs = r.object("rope_scaling");
  s.rope_scaling.type = rs.req_string("type");
  s.rope_scaling.factor = rs.req_number("factor", 0, 1e30);
  s.rope_scaling.low_freq_factor = rs.req_number("low_freq_factor", 0, 1e30);
  s.rope_scaling.high_freq_factor = rs.req_number("high_freq_factor", 0, 1e30);
  s.rope_scaling.original_max_position = rs.req_int("original_max_position", 1, L::kMaxSeq);
  // Bounded before the layer table is built from it.
  const nlohmann::json& layers = r.array("layers", static_cast<size_t>(L::kMaxLayers));
  s.layers.reserve(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const checked_json::ObjectReader l = r.element("layers", i);
    LayerSpec ls;
    ls.n_head = l.req_int("n_head", 1, L::kMaxDim);
    ls.n_kv_head = l.req_int("n_kv_head", 1, L::kMaxDim);
    ls.head_dim = l.req_int("head_dim", 1, L::kMaxDim);
    ls.ffn_dim = l.req_int("ffn_dim", 1, L::kMaxDim);
    ls.attn_qkv_bias = l.req_bool("attn_qkv_bias");
    ls.attn_out_bias = l.req_bool("attn_out_bias");
    ls.mlp_bias = l.req_bool("mlp_bias");
    ls.window = l.req_int("window", 0, L::kMaxSeq);
    ls.rope_theta = l.req_number("rope_theta", 0, 1e30);
    ls.rope_scaled = l.opt_bool("rope_scaled", true);
    ls.qk_norm = l.opt_bool("qk_norm", false);
    ls.post_norms = l.opt_bool("post_norms", false);
    ls.attn_scale = l.opt_number("attn_scale", 0.0, 0, 1e30);
    ls.n_expert = l.opt_int("n_expert", 0, 0, L::kMaxExperts);
    ls.n_expert_used = l.opt_int("n_expert_used", 0, 0, L::kMaxExperts);
    s.layers.push_back(ls);
  }
  try {
    s.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
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
