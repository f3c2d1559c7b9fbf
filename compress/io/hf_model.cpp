// Hugging Face checkpoints: config.json <-> ModelSpec and HF tensor names <-> canonical names.
// Loads llama, mistral, qwen2, phi3, gemma3_text, mixtral and openelm; writes llama, mistral and
// qwen2 (the shapes `slmc train` makes and the passes write back).
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/json_util.h"
#include "compress/core/mapped_file.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/io/safetensors.h"

namespace slmc {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// One row per supported HF architecture, with the defaults of its transformers config class for
// keys a config.json may omit.
struct HfArch {
  Family family;
  const char* model_type;
  const char* architecture;
  int64_t default_max_position;
  bool qkv_bias;  // fixed by the architecture (qwen2); llama reads `attention_bias`
  double default_rope_theta;
  double default_norm_eps;
  bool default_tied;
  bool writable;  // save_hf_model can write it back (the others load only)
};
constexpr HfArch kHfArchs[] = {
    {Family::kLlama, "llama", "LlamaForCausalLM", 2048, false, 10000.0, 1e-6, false, true},
    {Family::kMistral, "mistral", "MistralForCausalLM", 4096 * 32, false, 10000.0, 1e-6, false, true},
    {Family::kQwen2, "qwen2", "Qwen2ForCausalLM", 32768, true, 10000.0, 1e-6, false, true},
    {Family::kPhi3, "phi3", "Phi3ForCausalLM", 4096, false, 10000.0, 1e-5, false, false},
    {Family::kGemma3, "gemma3_text", "Gemma3ForCausalLM", 131072, false, 1000000.0, 1e-6, true, false},
    {Family::kMixtral, "mixtral", "MixtralForCausalLM", 4096 * 32, false, 1000000.0, 1e-5, false, false},
    {Family::kOpenELM, "openelm", "OpenELMForCausalLM", 2048, false, 10000.0, 1e-6, true, false},
};
constexpr int64_t kDefaultSlidingWindow = 4096;  // MistralConfig, Qwen2Config
constexpr int64_t kDefaultQwen2MaxWindowLayers = 28;

std::string supported_model_types() {
  std::string s;
  for (const HfArch& a : kHfArchs) s += std::string(s.empty() ? "" : ", ") + a.model_type;
  return s;
}

const HfArch* arch_for_family(Family f) {
  for (const HfArch& a : kHfArchs)
    if (a.family == f) return &a;
  return nullptr;
}

// ---- HF tensor names <-> canonical names: one rule table per family ---------------------------
//
// A rule maps one HF tensor onto one or more canonical tensors: fused tensors (phi3 qkv_proj and
// gate_up_proj, openelm qkv_proj and proj_1) are row ranges of the HF tensor, in order. `add` is
// added on load and subtracted on save: gemma3 stores RMSNorm weights as w with the norm
// multiplying by (1 + w) in fp32; canonical norm weights are the multiplier itself.
struct Piece {
  std::string canonical;
  int64_t rows;  // rows of the HF tensor this piece takes (the canonical tensor's first dim)
};
struct HfRule {
  std::string hf;
  std::vector<Piece> pieces;
  float add = 0.0f;
};

struct FamilyNames {
  const char* embed;
  const char* final_norm;
  const char* head;
  const char* layer_prefix;  // followed by "{i}."
};
constexpr FamilyNames kLlamaNames = {"model.embed_tokens.weight", "model.norm.weight",
                                     "lm_head.weight", "model.layers."};
// apple/OpenELM modeling_openelm.py: OpenELMForCausalLM.transformer = OpenELMModel.
constexpr FamilyNames kOpenElmNames = {"transformer.token_embeddings.weight",
                                       "transformer.norm.weight", "lm_head.weight",
                                       "transformer.layers."};

const FamilyNames& family_names(Family f) {
  return f == Family::kOpenELM ? kOpenElmNames : kLlamaNames;
}

std::vector<HfRule> hf_rules(const ModelSpec& spec) {
  const Family fam = spec.family;
  const FamilyNames& fn = family_names(fam);
  const bool gemma = fam == Family::kGemma3;
  const float norm_add = gemma ? 1.0f : 0.0f;
  std::vector<HfRule> r;
  auto one = [&](std::string hf, std::string canonical, int64_t rows, float add = 0.0f) {
    r.push_back({std::move(hf), {{std::move(canonical), rows}}, add});
  };
  const int64_t d = spec.d_model;
  one(fn.embed, names::kTokenEmbd, spec.vocab);
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    const LayerSpec& l = spec.layers[static_cast<size_t>(i)];
    const std::string p = fn.layer_prefix + std::to_string(i) + ".";
    auto b = [&](const char* s) { return names::blk(i, s); };
    const int64_t q = l.n_head * l.head_dim, kv = l.n_kv_head * l.head_dim;
    if (fam == Family::kOpenELM) {
      one(p + "attn_norm.weight", b(names::kAttnNorm), d);
      r.push_back({p + "attn.qkv_proj.weight",
                   {{b(names::kAttnQ), q}, {b(names::kAttnK), kv}, {b(names::kAttnV), kv}}});
      if (l.qk_norm) {
        one(p + "attn.q_norm.weight", b(names::kAttnQNorm), l.head_dim);
        one(p + "attn.k_norm.weight", b(names::kAttnKNorm), l.head_dim);
      }
      one(p + "attn.out_proj.weight", b(names::kAttnOut), d);
      one(p + "ffn_norm.weight", b(names::kFfnNorm), d);
      r.push_back({p + "ffn.proj_1.weight", {{b(names::kFfnGate), l.ffn_dim}, {b(names::kFfnUp), l.ffn_dim}}});
      one(p + "ffn.proj_2.weight", b(names::kFfnDown), d);
      continue;
    }
    one(p + "input_layernorm.weight", b(names::kAttnNorm), d, norm_add);
    if (fam == Family::kPhi3) {
      r.push_back({p + "self_attn.qkv_proj.weight",
                   {{b(names::kAttnQ), q}, {b(names::kAttnK), kv}, {b(names::kAttnV), kv}}});
    } else {
      one(p + "self_attn.q_proj.weight", b(names::kAttnQ), q);
      one(p + "self_attn.k_proj.weight", b(names::kAttnK), kv);
      one(p + "self_attn.v_proj.weight", b(names::kAttnV), kv);
    }
    if (l.attn_qkv_bias) {
      one(p + "self_attn.q_proj.bias", b(names::kAttnQBias), q);
      one(p + "self_attn.k_proj.bias", b(names::kAttnKBias), kv);
      one(p + "self_attn.v_proj.bias", b(names::kAttnVBias), kv);
    }
    if (l.qk_norm) {
      one(p + "self_attn.q_norm.weight", b(names::kAttnQNorm), l.head_dim, norm_add);
      one(p + "self_attn.k_norm.weight", b(names::kAttnKNorm), l.head_dim, norm_add);
    }
    one(p + "self_attn.o_proj.weight", b(names::kAttnOut), d);
    if (l.attn_out_bias) one(p + "self_attn.o_proj.bias", b(names::kAttnOutBias), d);
    if (gemma) {
      // Gemma 3: post_attention_layernorm normalises the attention OUTPUT; the MLP's input norm
      // is pre_feedforward_layernorm.
      one(p + "post_attention_layernorm.weight", b(names::kAttnPostNorm), d, norm_add);
      one(p + "pre_feedforward_layernorm.weight", b(names::kFfnNorm), d, norm_add);
      one(p + "post_feedforward_layernorm.weight", b(names::kFfnPostNorm), d, norm_add);
    } else {
      one(p + "post_attention_layernorm.weight", b(names::kFfnNorm), d);
    }
    if (l.is_moe()) {
      // modeling_mixtral.py: block_sparse_moe.gate (router), experts.{e}.w1 (gate), w2 (down),
      // w3 (up).
      one(p + "block_sparse_moe.gate.weight", b(names::kFfnRouter), l.n_expert);
      for (int64_t e = 0; e < l.n_expert; ++e) {
        const std::string ep = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
        one(ep + "w1.weight", names::expert(i, e, names::kFfnGate), l.ffn_dim);
        one(ep + "w2.weight", names::expert(i, e, names::kFfnDown), d);
        one(ep + "w3.weight", names::expert(i, e, names::kFfnUp), l.ffn_dim);
      }
    } else if (fam == Family::kPhi3) {
      r.push_back({p + "mlp.gate_up_proj.weight", {{b(names::kFfnGate), l.ffn_dim}, {b(names::kFfnUp), l.ffn_dim}}});
      one(p + "mlp.down_proj.weight", b(names::kFfnDown), d);
    } else {
      one(p + "mlp.gate_proj.weight", b(names::kFfnGate), l.ffn_dim);
      one(p + "mlp.up_proj.weight", b(names::kFfnUp), l.ffn_dim);
      one(p + "mlp.down_proj.weight", b(names::kFfnDown), d);
    }
    if (l.mlp_bias) {
      one(p + "mlp.gate_proj.bias", b(names::kFfnGateBias), l.ffn_dim);
      one(p + "mlp.up_proj.bias", b(names::kFfnUpBias), l.ffn_dim);
      one(p + "mlp.down_proj.bias", b(names::kFfnDownBias), d);
    }
  }
  one(fn.final_norm, names::kOutputNorm, d, norm_add);
  if (!spec.tied_embeddings) one(fn.head, names::kOutput, spec.vocab);
  return r;
}

// Tensors a checkpoint may carry that the spec derives: a tied model's lm_head copy, and the
// RoPE frequencies old checkpoints saved as buffers.
bool ignorable_hf_tensor(const std::string& hf, const ModelSpec& spec) {
  const FamilyNames& fn = family_names(spec.family);
  if (spec.tied_embeddings && hf == fn.head) return true;
  const std::string suffix = "rotary_emb.inv_freq";
  return hf.compare(0, std::strlen(fn.layer_prefix), fn.layer_prefix) == 0 &&
         hf.size() > suffix.size() && hf.compare(hf.size() - suffix.size(), suffix.size(), suffix) == 0;
}
// Typed access to config.json keys through the checked reader of compress/core/json_util.h:
// every error names the file, the key and a bounded excerpt of the value, and every count is
// held to SpecLimits before anything is built from it.
class ConfigReader : public checked_json::ObjectReader {
 public:
  using ObjectReader::ObjectReader;
  using ObjectReader::opt_number;
  using ObjectReader::req_number;
  ConfigReader(const ObjectReader& r) : ObjectReader(r) {}  // NOLINT: a nested object

  int64_t req_positive(const char* key, int64_t hi) const { return req_int(key, 1, hi); }
  int64_t opt_positive(const char* key, int64_t def, int64_t hi) const {
    return opt_int(key, def, 1, hi);
  }
  // Any finite number.
  double req_number(const char* key) const { return req_number(key, -kHuge, kHuge); }
  double opt_number(const char* key, double def) const { return opt_number(key, def, -kHuge, kHuge); }
  // A finite number > 0.
  double opt_positive_number(const char* key, double def) const {
    const double v = opt_number(key, def);
    SLMC_CHECK(v > 0, what(key), " must be > 0, got ", v);
    return v;
  }
  // A token id: an integer, null (-1: none), or a list whose first element is used (HF allows
  // several eos ids; ModelSpec keeps one).
  int64_t opt_token_id(const char* key, int64_t def) const {
    if (!contains(key)) return def;
    if (!has(key)) return -1;
    const nlohmann::json& v = at(key);
    if (v.is_array()) {
      SLMC_CHECK(!v.empty(), what(key), " is an empty list");
      return checked_json::get_int(v[0], what(key) + "[0]", 0, SpecLimits::kMaxVocab - 1);
    }
    return checked_json::get_int(v, what(key), 0, SpecLimits::kMaxVocab - 1);
  }
  // One integer per layer in [1, hi]: a scalar for every layer, or (slmc's per-layer widths, see
  // compress/io/README.md) a list of exactly n_layer integers.
  std::vector<int64_t> per_layer_ints(const char* key, int64_t n_layer, int64_t hi) const {
    const nlohmann::json& v = at(key);
    if (!v.is_array()) return std::vector<int64_t>(static_cast<size_t>(n_layer), req_int(key, 1, hi));
    SLMC_CHECK(static_cast<int64_t>(v.size()) == n_layer, what(key),
               " must be an integer or a list of ", n_layer, " integers (one per layer), got ",
               checked_json::excerpt(v));
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(checked_json::get_int(v[i], element_what(key, i), 1, hi));
    return out;
  }

 private:
  static constexpr double kHuge = 1e300;
};

// rope_scaling: null, {"rope_type"|"type": "default"}, linear {factor} or the llama3 parameters.
RopeScaling parse_rope_scaling(const ConfigReader& parent, const char* key) {
  RopeScaling out;
  if (!parent.has(key)) return out;
  const ConfigReader r = parent.object(key);
  const char* type_key = r.has("rope_type") ? "rope_type" : "type";
  SLMC_CHECK(r.has(type_key), parent.what(key), " has no 'rope_type' (or 'type')");
  const std::string type = r.req_string(type_key);
  if (type == "default") return out;
  SLMC_CHECK(type == "llama3" || type == "linear", r.what(type_key), " = ",
             checked_json::excerpt(r.at(type_key)), " is not supported (supported: default, linear, llama3)");
  if (type == "linear") {
    out.type = "linear";
    out.factor = r.req_number("factor", 0, 1e30);
    SLMC_CHECK(out.factor > 0, r.what("factor"), " must be > 0, got ", out.factor);
    return out;
  }
  out.type = "llama3";
  out.factor = r.req_number("factor", 0, 1e30);
  out.low_freq_factor = r.req_number("low_freq_factor", 0, 1e30);
  out.high_freq_factor = r.req_number("high_freq_factor", 0, 1e30);
  out.original_max_position = r.req_positive("original_max_position_embeddings", SpecLimits::kMaxSeq);
  return out;
}

// OpenELM's make_divisible (modeling_openelm.py), used for its per-layer FFN widths.
int64_t openelm_make_divisible(double v, int64_t divisor) {
  const double dv = static_cast<double>(divisor);
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + dv / 2) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

// apple/OpenELM configuration_openelm.py as written to config.json (after __post_init__ has
// expanded the per-layer lists).
ModelSpec parse_openelm_config(const ConfigReader& r, const std::string& origin) {
  using L = SpecLimits;
  ModelSpec spec;
  spec.family = Family::kOpenELM;
  spec.d_model = r.req_positive("model_dim", L::kMaxDim);
  const int64_t n_layer = r.req_positive("num_transformer_layers", L::kMaxLayers);
  const int64_t head_dim = r.req_positive("head_dim", L::kMaxDim);
  spec.vocab = r.req_positive("vocab_size", L::kMaxVocab);
  spec.max_seq = r.opt_positive("max_context_length", 2048, L::kMaxSeq);
  spec.norm_eps = 1e-6;  // OpenELMRMSNorm's default; the config has no key for it
  spec.tied_embeddings = r.opt_bool("share_input_output_layers", true);
  spec.bos_id = r.opt_token_id("bos_token_id", 1);
  spec.eos_id = r.opt_token_id("eos_token_id", 2);
  const std::string act = r.opt_string("activation_fn_name", "swish");
  SLMC_CHECK(act == "swish" || act == "silu" || act == "gelu_pytorch_tanh", r.what("activation_fn_name"),
             " = ", checked_json::excerpt(r.at("activation_fn_name")),
             " is not supported (supported: swish, gelu_pytorch_tanh)");
  spec.act = act == "gelu_pytorch_tanh" ? Activation::kGeluTanh : Activation::kSilu;
  SLMC_CHECK(r.opt_bool("ffn_with_glu", true), r.what("ffn_with_glu"),
             " false (a non-gated FFN) is not supported");
  if (r.has("normalization_layer_name")) {
    const std::string n = r.req_string("normalization_layer_name");
    SLMC_CHECK(n == "rms_norm", r.what("normalization_layer_name"), " = ",
               checked_json::excerpt(r.at("normalization_layer_name")),
               " is not supported (supported: rms_norm)");
  }
  const bool qk_norm = r.opt_bool("normalize_qk_projections", false);
  const double theta = r.opt_positive_number("rope_freq_constant", 10000.0);
  const int64_t divisor = r.opt_positive("ffn_dim_divisor", 256, L::kMaxDim);
  SLMC_CHECK(r.has("num_query_heads") && r.has("num_kv_heads"), origin,
             ": keys 'num_query_heads' and 'num_kv_heads' (one value per layer) are required");
  const std::vector<int64_t> nq = r.per_layer_ints("num_query_heads", n_layer, L::kMaxDim);
  const std::vector<int64_t> nkv = r.per_layer_ints("num_kv_heads", n_layer, L::kMaxDim);
  // ffn_multipliers[i] x model_dim below 2^20 (L::kMaxDim), so make_divisible stays in range.
  const double max_mult = static_cast<double>(L::kMaxDim) / static_cast<double>(spec.d_model);
  std::vector<double> mult;
  const nlohmann::json& m = r.at("ffn_multipliers");
  if (m.is_array()) {
    SLMC_CHECK(static_cast<int64_t>(m.size()) == n_layer, r.what("ffn_multipliers"),
               " must be a number or a list of ", n_layer, " numbers (num_transformer_layers), got ",
               checked_json::excerpt(m));
    for (size_t i = 0; i < m.size(); ++i)
      mult.push_back(checked_json::get_number(m[i], r.element_what("ffn_multipliers", i), 0, max_mult));
  } else {
    mult.assign(static_cast<size_t>(n_layer), r.req_number("ffn_multipliers", 0, max_mult));
  }
  for (int64_t i = 0; i < n_layer; ++i) {
    const size_t k = static_cast<size_t>(i);
    SLMC_CHECK(mult[k] > 0, r.element_what("ffn_multipliers", k), " must be > 0, got ", mult[k]);
    LayerSpec l;
    l.n_head = nq[k];
    l.n_kv_head = nkv[k];
    SLMC_CHECK(l.n_head % l.n_kv_head == 0, r.element_what("num_query_heads", k), " = ", l.n_head,
               " is not a multiple of num_kv_heads[", i, "] = ", l.n_kv_head);
    l.head_dim = head_dim;
    l.ffn_dim = openelm_make_divisible(mult[k] * static_cast<double>(spec.d_model), divisor);
    l.rope_theta = theta;
    l.qk_norm = qk_norm;
    spec.layers.push_back(l);
  }
  return spec;
}

}  // namespace

ModelSpec parse_hf_config(const std::string& json_text, const std::string& origin) {
  using L = SpecLimits;
  const json j = checked_json::parse(json_text, origin);  // depth bound, duplicate keys refused
  const ConfigReader r(j, origin);

  const std::string model_type = r.req_string("model_type");
  const HfArch* arch = nullptr;
  for (const HfArch& a : kHfArchs)
    if (model_type == a.model_type) arch = &a;
  SLMC_CHECK(arch != nullptr, r.what("model_type"), " = ", checked_json::excerpt(r.at("model_type")),
             " is not supported (supported: ", supported_model_types(), ")");

  if (arch->family == Family::kOpenELM) {
    ModelSpec spec = parse_openelm_config(r, origin);
    try {
      spec.validate();
    } catch (const Error& e) {
      fail(origin, ": ", e.what());
    }
    return spec;
  }

  const Family fam = arch->family;
  ModelSpec spec;
  spec.family = fam;
  spec.d_model = r.req_positive("hidden_size", L::kMaxDim);
  // Bounded first: everything per layer below is built from it.
  const int64_t n_layer = r.req_positive("num_hidden_layers", L::kMaxLayers);
  // Per-layer widths (slmc's extension for structurally pruned models): each of these may be a
  // list of num_hidden_layers integers; transformers itself reads only scalars.
  const std::vector<int64_t> ffn_dim = r.per_layer_ints("intermediate_size", n_layer, L::kMaxDim);
  const std::vector<int64_t> n_head = r.per_layer_ints("num_attention_heads", n_layer, L::kMaxDim);
  const std::vector<int64_t> n_kv_head = r.has("num_key_value_heads")
                                             ? r.per_layer_ints("num_key_value_heads", n_layer, L::kMaxDim)
                                             : n_head;
  const bool head_list = r.at("num_attention_heads").is_array();
  for (int64_t i = 0; i < n_layer; ++i) {
    const size_t k = static_cast<size_t>(i);
    SLMC_CHECK(n_head[k] % n_kv_head[k] == 0, origin, ": num_attention_heads",
               head_list ? str_cat("[", i, "]") : "", " ", n_head[k],
               " is not a multiple of num_key_value_heads", head_list ? str_cat("[", i, "]") : "", " ",
               n_kv_head[k]);
  }
  int64_t head_dim = 0;
  if (r.has("head_dim")) {
    head_dim = r.req_positive("head_dim", L::kMaxDim);
  } else if (fam == Family::kGemma3) {
    head_dim = 256;  // Gemma3TextConfig default
  } else {
    SLMC_CHECK(!head_list, origin,
               ": key 'head_dim' is required when num_attention_heads is a per-layer list");
    SLMC_CHECK(spec.d_model % n_head[0] == 0, origin, ": hidden_size ", spec.d_model,
               " is not divisible by num_attention_heads ", n_head[0], " (and no head_dim is given)");
    head_dim = spec.d_model / n_head[0];
  }
  spec.vocab = r.req_positive("vocab_size", L::kMaxVocab);
  spec.max_seq = r.opt_positive("max_position_embeddings", arch->default_max_position, L::kMaxSeq);
  spec.norm_eps = r.opt_number("rms_norm_eps", arch->default_norm_eps);
  SLMC_CHECK(spec.norm_eps > 0 && spec.norm_eps < 1, r.what("rms_norm_eps"), " out of range: ",
             spec.norm_eps);
  spec.tied_embeddings = r.opt_bool("tie_word_embeddings", arch->default_tied);
  spec.bos_id = r.opt_token_id("bos_token_id", fam == Family::kGemma3 ? 2 : spec.bos_id);
  spec.eos_id = r.opt_token_id("eos_token_id", fam == Family::kGemma3 ? 1 : spec.eos_id);
  // Gemma 3 names the MLP activation hidden_activation (default gelu_pytorch_tanh).
  const char* act_key = fam == Family::kGemma3 ? "hidden_activation" : "hidden_act";
  if (fam == Family::kGemma3) spec.act = Activation::kGeluTanh;
  if (r.has(act_key)) {
    const std::string act = r.req_string(act_key);
    SLMC_CHECK(activation_from_name(act, &spec.act), r.what(act_key), " = ",
               checked_json::excerpt(r.at(act_key)), " is not supported (supported: silu, gelu_pytorch_tanh)");
  }
  if (r.has("partial_rotary_factor")) {
    const double prf = r.req_number("partial_rotary_factor");
    SLMC_CHECK(prf == 1.0, r.what("partial_rotary_factor"), " = ", prf,
               " is not supported (RoPE on part of each head); only 1.0");
  }
  for (const char* cap : {"attn_logit_softcapping", "final_logit_softcapping"})
    SLMC_CHECK(!r.has(cap), r.what(cap), " = ", r.has(cap) ? checked_json::excerpt(r.at(cap)) : "",
               " is not supported (logit soft-capping); only null");
  SLMC_CHECK(!r.opt_bool("use_bidirectional_attention", false), r.what("use_bidirectional_attention"),
             " true is not supported (decoders only)");

  // RoPE: transformers < 5 writes rope_theta + rope_scaling; >= 5 writes rope_parameters.
  double rope_theta = r.opt_positive_number("rope_theta", arch->default_rope_theta);
  if (r.has("rope_scaling")) {
    spec.rope_scaling = parse_rope_scaling(r, "rope_scaling");
  } else if (r.has("rope_parameters")) {
    spec.rope_scaling = parse_rope_scaling(r, "rope_parameters");
    const ConfigReader rp = r.object("rope_parameters");
    rope_theta = rp.opt_positive_number("rope_theta", rope_theta);
  }

  LayerSpec layer;
  layer.head_dim = head_dim;
  layer.rope_theta = rope_theta;
  layer.attn_qkv_bias = arch->qkv_bias;
  if (fam == Family::kLlama || fam == Family::kGemma3) {
    // LlamaAttention / Gemma3Attention put `attention_bias` on q, k, v and o alike.
    layer.attn_qkv_bias = layer.attn_out_bias = r.opt_bool("attention_bias", false);
  }
  if (fam == Family::kLlama) layer.mlp_bias = r.opt_bool("mlp_bias", false);
  if (fam == Family::kMixtral) {
    layer.n_expert = r.opt_positive("num_local_experts", 8, L::kMaxExperts);
    layer.n_expert_used = r.opt_positive("num_experts_per_tok", 2, L::kMaxExperts);
    SLMC_CHECK(layer.n_expert_used <= layer.n_expert, r.what("num_experts_per_tok"), " = ",
               layer.n_expert_used, " exceeds num_local_experts ", layer.n_expert);
    // The tensor table grows with layers x experts: bounded before it is built.
    SLMC_CHECK(n_layer * layer.n_expert <= L::kMaxTensors / 3, origin, ": num_hidden_layers ",
               n_layer, " x num_local_experts ", layer.n_expert, " = ", n_layer * layer.n_expert,
               " experts (at most ", L::kMaxTensors / 3, ")");
  }
  if (fam == Family::kGemma3) {
    layer.qk_norm = true;
    layer.post_norms = true;
    const double qpas = r.opt_positive_number("query_pre_attn_scalar", 256.0);
    layer.attn_scale = std::pow(qpas, -0.5);
    spec.embed_scale = std::sqrt(static_cast<double>(spec.d_model));
  }
  spec.layers.assign(static_cast<size_t>(n_layer), layer);
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    spec.layers[i].n_head = n_head[i];
    spec.layers[i].n_kv_head = n_kv_head[i];
    spec.layers[i].ffn_dim = ffn_dim[i];
  }

  // The window of the families that use one sliding_window for every layer: null (or absent,
  // where the config class defaults to None) means full attention.
  auto uniform_window = [&](int64_t default_window) -> int64_t {
    if (r.has("sliding_window")) return r.req_positive("sliding_window", L::kMaxSeq);
    return r.contains("sliding_window") ? 0 : default_window;
  };
  // layer_types: "full_attention" / "sliding_attention" per layer; false when absent.
  auto read_layer_types = [&](std::vector<bool>* sliding) {
    if (!r.has("layer_types")) return false;
    const json& types = r.at("layer_types");
    SLMC_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == n_layer, r.what("layer_types"),
               " must be a list of ", n_layer, " strings, got ", checked_json::excerpt(types));
    sliding->assign(static_cast<size_t>(n_layer), false);
    for (int64_t i = 0; i < n_layer; ++i) {
      const json& t = types[static_cast<size_t>(i)];
      const bool s = t.is_string() && t.get_ref<const std::string&>() == "sliding_attention";
      SLMC_CHECK(s || (t.is_string() && t.get_ref<const std::string&>() == "full_attention"),
                 r.element_what("layer_types", static_cast<size_t>(i)),
                 " must be \"full_attention\" or \"sliding_attention\", got ", checked_json::excerpt(t));
      (*sliding)[static_cast<size_t>(i)] = s;
    }
    return true;
  };

  if (fam == Family::kMistral) {
    // MistralConfig: sliding_window (default 4096) on every layer; null means full attention.
    const int64_t window = uniform_window(kDefaultSlidingWindow);
    for (LayerSpec& l : spec.layers) l.window = window;
  } else if (fam == Family::kMixtral || fam == Family::kPhi3) {
    // MixtralConfig / Phi3Config: sliding_window defaults to None; current transformers masks
    // with it when set (key j visible from query i iff i - j < window).
    const int64_t window = uniform_window(0);
    for (LayerSpec& l : spec.layers) l.window = window;
  } else if (fam == Family::kGemma3) {
    // Gemma3TextConfig: local (sliding) layers use sliding_window and rope_local_base_freq with
    // plain RoPE; global layers full attention with rope_theta and rope_scaling. Which is which:
    // layer_types, else sliding_window_pattern (layer i is global iff (i + 1) % pattern == 0).
    const int64_t window = uniform_window(4096);
    const double local_theta = r.opt_positive_number("rope_local_base_freq", 10000.0);
    std::vector<bool> sliding;
    if (!read_layer_types(&sliding)) {
      const char* pk = r.has("sliding_window_pattern") ? "sliding_window_pattern" : "_sliding_window_pattern";
      const int64_t pattern = r.opt_positive(pk, 6, L::kMaxLayers);
      sliding.resize(static_cast<size_t>(n_layer));
      for (int64_t i = 0; i < n_layer; ++i) sliding[static_cast<size_t>(i)] = (i + 1) % pattern != 0;
    }
    for (int64_t i = 0; i < n_layer; ++i) {
      LayerSpec& l = spec.layers[static_cast<size_t>(i)];
      if (!sliding[static_cast<size_t>(i)]) continue;
      l.window = window;
      l.rope_theta = local_theta;
      l.rope_scaled = false;
    }
  } else if (fam == Family::kQwen2) {
    // Qwen2Config: sliding_window counts only if use_sliding_window; then it applies to the
    // layers listed as "sliding_attention" in layer_types, or by default to layers
    // i >= max_window_layers.
    const bool use_sliding = r.opt_bool("use_sliding_window", false);
    const int64_t window = use_sliding ? uniform_window(kDefaultSlidingWindow) : 0;
    std::vector<bool> sliding;
    if (read_layer_types(&sliding)) {
      for (int64_t i = 0; i < n_layer; ++i)
        spec.layers[static_cast<size_t>(i)].window = sliding[static_cast<size_t>(i)] ? window : 0;
    } else if (window > 0) {
      const int64_t max_window_layers =
          r.opt_int("max_window_layers", kDefaultQwen2MaxWindowLayers, 0, INT64_MAX);
      for (int64_t i = max_window_layers; i < n_layer; ++i)
        spec.layers[static_cast<size_t>(i)].window = window;
    }
  }

  try {
    spec.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return spec;
}

std::string hf_config_json(const ModelSpec& spec, DType dtype) {
  const HfArch* arch = arch_for_family(spec.family);
  SLMC_CHECK(arch != nullptr && arch->writable, "Hugging Face config: writing family '",
             family_name(spec.family), "' is not supported (supported: llama, mistral, qwen2)");
  spec.validate();
  const LayerSpec& l0 = spec.layers.front();
  const std::string what = str_cat("Hugging Face ", arch->model_type, " config");
  // n_head, n_kv_head and ffn_dim may differ per layer (written as lists, compress/io/README.md);
  // everything else config.json holds once for all layers.
  for (size_t i = 1; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    SLMC_CHECK(l.head_dim == l0.head_dim && l.attn_qkv_bias == l0.attn_qkv_bias &&
                   l.attn_out_bias == l0.attn_out_bias && l.mlp_bias == l0.mlp_bias &&
                   l.rope_theta == l0.rope_theta,
               what, ": layer ", i, " differs from layer 0 (head_dim ", l.head_dim, " vs ",
               l0.head_dim, ", biases, rope_theta ", l.rope_theta, " vs ", l0.rope_theta,
               "); config.json holds one value of these for all layers");
  }
  // One integer for every layer, or a list when they differ.
  const auto per_layer = [&](int64_t LayerSpec::*field) {
    bool uniform = true;
    json list = json::array();
    for (const LayerSpec& l : spec.layers) {
      uniform = uniform && l.*field == l0.*field;
      list.push_back(l.*field);
    }
    return uniform ? json(l0.*field) : list;
  };
  const char* torch_dtype = dtype == DType::kF32    ? "float32"
                            : dtype == DType::kF16  ? "float16"
                            : dtype == DType::kBF16 ? "bfloat16"
                                                    : nullptr;
  SLMC_CHECK(torch_dtype != nullptr, what, ": cannot store weights as ", dtype_name(dtype));

  json j = json::object();
  j["architectures"] = {arch->architecture};
  j["model_type"] = arch->model_type;
  j["hidden_size"] = spec.d_model;
  j["intermediate_size"] = per_layer(&LayerSpec::ffn_dim);
  j["num_hidden_layers"] = spec.n_layer();
  j["num_attention_heads"] = per_layer(&LayerSpec::n_head);
  j["num_key_value_heads"] = per_layer(&LayerSpec::n_kv_head);
  j["head_dim"] = l0.head_dim;
  j["hidden_act"] = activation_name(spec.act);
  j["rms_norm_eps"] = spec.norm_eps;
  j["rope_theta"] = l0.rope_theta;
  if (spec.rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {
        {"rope_type", spec.rope_scaling.type},
        {"factor", spec.rope_scaling.factor},
        {"low_freq_factor", spec.rope_scaling.low_freq_factor},
        {"high_freq_factor", spec.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", spec.rope_scaling.original_max_position}};
  }
  j["vocab_size"] = spec.vocab;
  j["max_position_embeddings"] = spec.max_seq;
  j["tie_word_embeddings"] = spec.tied_embeddings;
  j["bos_token_id"] = spec.bos_id >= 0 ? json(spec.bos_id) : json(nullptr);
  j["eos_token_id"] = spec.eos_id >= 0 ? json(spec.eos_id) : json(nullptr);
  j["torch_dtype"] = torch_dtype;

  switch (spec.family) {
    case Family::kLlama:
      SLMC_CHECK(l0.attn_qkv_bias == l0.attn_out_bias, what,
                 ": attention_bias covers q, k, v and o together; the spec has qkv bias ",
                 l0.attn_qkv_bias, ", output bias ", l0.attn_out_bias);
      j["attention_bias"] = l0.attn_qkv_bias;
      j["mlp_bias"] = l0.mlp_bias;
      for (size_t i = 0; i < spec.layers.size(); ++i)
        SLMC_CHECK(spec.layers[i].window == 0, what, ": layer ", i, " has a sliding window of ",
                   spec.layers[i].window, "; llama has none");
      break;
    case Family::kMistral: {
      SLMC_CHECK(!l0.attn_qkv_bias && !l0.attn_out_bias && !l0.mlp_bias, what,
                 ": mistral has no attention or MLP biases");
      for (size_t i = 1; i < spec.layers.size(); ++i)
        SLMC_CHECK(spec.layers[i].window == l0.window, what, ": layer ", i, " has window ",
                   spec.layers[i].window, ", layer 0 has ", l0.window,
                   "; mistral uses one sliding_window for all layers");
      j["sliding_window"] = l0.window > 0 ? json(l0.window) : json(nullptr);
      break;
    }
    case Family::kQwen2: {
      SLMC_CHECK(l0.attn_qkv_bias && !l0.attn_out_bias && !l0.mlp_bias, what,
                 ": qwen2 has q, k, v biases and no others");
      // Representable: layers [0, k) full, layers [k, n) all with the same window.
      int64_t k = spec.n_layer();
      for (int64_t i = 0; i < spec.n_layer(); ++i)
        if (spec.layers[static_cast<size_t>(i)].window > 0) {
          k = i;
          break;
        }
      const int64_t window = k < spec.n_layer() ? spec.layers[static_cast<size_t>(k)].window : 0;
      for (int64_t i = k; i < spec.n_layer(); ++i)
        SLMC_CHECK(spec.layers[static_cast<size_t>(i)].window == window, what, ": layer ", i,
                   " has window ", spec.layers[static_cast<size_t>(i)].window,
                   "; qwen2 windows must be 0 up to max_window_layers and then all ", window);
      j["use_sliding_window"] = window > 0;
      j["sliding_window"] = window > 0 ? json(window) : json(nullptr);
      j["max_window_layers"] = k;
      break;
    }
    default:
      break;
  }
  return j.dump(2) + "\n";
}

LoadedModel load_hf_model(const std::string& dir) {
  std::error_code ec;
  SLMC_CHECK(fs::is_directory(dir, ec), dir,
             ": not a directory (expected a Hugging Face model "
             "directory with config.json)");
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  SLMC_CHECK(fs::is_regular_file(config_path, ec), config_path,
             ": missing (expected a Hugging "
             "Face config.json)");
  LoadedModel m;
  m.path = dir;
  m.format = "hf";
  m.spec = parse_hf_config(read_file(config_path), config_path);

  // Where each HF tensor's bytes are: its shard and the name stored there, which differs for a
  // name safetensors deduplicated (`__metadata__` maps the dropped name to the kept one, as
  // safetensors.torch.save_model writes tied weights).
  struct Source {
    const SafetensorsFile* shard;
    std::string stored;
  };
  std::map<std::string, Source> sources;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;  // by file name
  const std::string single = (fs::path(dir) / kWeightsFile).string();
  const std::string index_path = (fs::path(dir) / kIndexFile).string();
  const bool sharded = !fs::is_regular_file(single, ec);
  if (!sharded) {
    auto f = std::make_unique<SafetensorsFile>(single);
    for (const auto& kv : f->entries()) sources[kv.first] = {f.get(), kv.first};
    shards[kWeightsFile] = std::move(f);
  } else {
    SLMC_CHECK(fs::is_regular_file(index_path, ec), dir, ": no ", kWeightsFile, " or ", kIndexFile);
    const json index = checked_json::parse(read_file(index_path), index_path);
    const checked_json::ObjectReader ir(index, index_path);
    const checked_json::ObjectReader wm = ir.object("weight_map");
    std::map<std::string, std::string> weight_map;  // HF tensor name -> shard file name
    for (const auto& kv : wm.json().items()) {
      const std::string what = str_cat(index_path, ": weight_map[", quoted_excerpt(kv.key()), "]");
      const std::string shard = checked_json::get_string(kv.value(), what, 4096);
      // Shards live beside the index; a path could point anywhere.
      SLMC_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                     shard.find('\\') == std::string::npos && shard != "." && shard != "..",
                 what, " = ", checked_json::excerpt(kv.value()),
                 " is not a plain file name in the model directory");
      weight_map[kv.key()] = shard;
    }
    for (const auto& kv : weight_map) {
      auto it = shards.find(kv.second);
      if (it == shards.end()) {
        const std::string shard_path = (fs::path(dir) / kv.second).string();
        SLMC_CHECK(fs::is_regular_file(shard_path, ec), index_path, ": tensor ",
                   quoted_excerpt(kv.first), " is mapped to shard ",
                   quoted_excerpt(kv.second), ", which does not exist");
        it = shards.emplace(kv.second, std::make_unique<SafetensorsFile>(shard_path)).first;
      }
      const SafetensorsFile& shard = *it->second;
      std::string stored = kv.first;
      if (!shard.has(stored)) {
        const auto alias = shard.metadata().find(kv.first);
        SLMC_CHECK(alias != shard.metadata().end() && shard.has(alias->second), shard.path(),
                   ": tensor ", quoted_excerpt(kv.first), " listed in ", kIndexFile,
                   " is not in this shard");
        stored = alias->second;
      }
      sources[kv.first] = {&shard, stored};
    }
  }

  // Bound the spec against what the files can hold before building its tables: every alias
  // comes from a metadata entry, so stored tensors + metadata entries bound the names.
  size_t available = sources.size();
  for (const auto& kv : shards) available += kv.second->metadata().size();
  const int64_t needed = m.spec.min_tensor_count();
  SLMC_CHECK(static_cast<int64_t>(available) >= needed, config_path, ": num_hidden_layers ",
             m.spec.n_layer(), m.spec.layers.front().is_moe()
                 ? str_cat(" x num_local_experts ", m.spec.layers.front().n_expert) : "",
             " imply at least ", needed, " tensors, the checkpoint in ", dir, " holds ",
             sources.size());

  std::map<std::string, const HfRule*> rule_of;
  const std::vector<HfRule> rules = hf_rules(m.spec);
  for (const HfRule& r : rules) rule_of[r.hf] = &r;
  // Deduplicated names the files do not list themselves (single file or a shard's own metadata).
  for (const auto& kv : shards)
    for (const auto& md : kv.second->metadata())
      if (rule_of.count(md.first) && !sources.count(md.first) && kv.second->has(md.second))
        sources[md.first] = {kv.second.get(), md.second};
  // A tied model whose checkpoint kept only the head's name (safetensors' dedupe without the
  // metadata alias): the head's weights are the embedding.
  const FamilyNames& fn = family_names(m.spec.family);
  if (m.spec.tied_embeddings && !sources.count(fn.embed) && sources.count(fn.head))
    sources.emplace(fn.embed, sources.at(fn.head));

  std::set<std::pair<const SafetensorsFile*, std::string>> counted;  // bytes on disk, once each
  for (const auto& kv : sources) {
    const std::string& hf_name = kv.first;
    const SafetensorsFile& shard = *kv.second.shard;
    auto it = rule_of.find(hf_name);
    if (it == rule_of.end()) {
      SLMC_CHECK(ignorable_hf_tensor(hf_name, m.spec), shard.path(), ": unknown tensor ",
                 quoted_excerpt(hf_name), " for a ", family_name(m.spec.family),
                 " model with ", m.spec.n_layer(), " layers");
      continue;
    }
    const HfRule& rule = *it->second;
    HostTensor t = shard.read(kv.second.stored);
    const int64_t bad = first_non_finite(t.data.data(), t.numel());
    SLMC_CHECK(bad < 0, shard.path(), ": tensor ", quoted_excerpt(kv.second.stored), " holds ",
               bad < 0 ? 0.0f : t.data[static_cast<size_t>(bad)], " at flat index ", bad,
               "; weights must be finite");
    const SafetensorsEntry& e = shard.entries().at(kv.second.stored);
    if (counted.insert({&shard, kv.second.stored}).second)
      m.bytes_by_dtype[dtype_name(e.dtype)] += static_cast<int64_t>(e.end - e.begin);
    if (rule.add != 0.0f)
      for (float& v : t.data) v += rule.add;
    if (rule.pieces.size() == 1) {
      m.tensors.emplace(rule.pieces[0].canonical, std::move(t));
      continue;
    }
    // A fused tensor: its rows are the pieces' rows, in order.
    int64_t rows = 0;
    for (const Piece& pc : rule.pieces) rows += pc.rows;
    SLMC_CHECK(t.shape.size() == 2 && t.shape[0] == rows, shard.path(), ": tensor '", hf_name,
               "' has shape ", t.shape_str(), "; the config implies ", rows, " rows (",
               rule.pieces.size(), " fused tensors)");
    const int64_t cols = t.shape[1];
    int64_t row0 = 0;
    for (const Piece& pc : rule.pieces) {
      HostTensor part;
      part.shape = {pc.rows, cols};
      part.source_dtype = t.source_dtype;
      part.data.assign(t.data.begin() + row0 * cols, t.data.begin() + (row0 + pc.rows) * cols);
      row0 += pc.rows;
      m.tensors.emplace(pc.canonical, std::move(part));
    }
  }
  check_tensors(m.spec, m.tensors, dir);
  return m;
}

void save_hf_model(const std::string& dir, const ModelSpec& spec, const TensorMap& tensors,
                   DType dtype) {
  const std::string config = hf_config_json(spec, dtype);  // rejects what HF cannot express
  check_tensors(spec, tensors, dir);
  // Every rule's HF tensor: its pieces' rows concatenated, with the load-time offset undone.
  std::map<std::string, HostTensor> by_hf_name;  // sorted by HF name, like HF's writer
  for (const HfRule& r : hf_rules(spec)) {
    HostTensor out;
    for (const Piece& pc : r.pieces) {
      const HostTensor& t = tensors.at(pc.canonical);
      if (out.shape.empty()) {
        out.shape = t.shape;
      } else {
        out.shape[0] += t.shape[0];
      }
      out.data.insert(out.data.end(), t.data.begin(), t.data.end());
    }
    if (r.add != 0.0f)
      for (float& v : out.data) v -= r.add;
    by_hf_name.emplace(r.hf, std::move(out));
  }
  std::vector<NamedTensor> hf;
  for (const auto& kv : by_hf_name) hf.push_back({kv.first, &kv.second});
  std::error_code ec;
  fs::create_directories(dir, ec);
  SLMC_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create directory: ", ec.message());
  // Weights first: a directory whose config.json is new always has matching weights.
  write_safetensors((fs::path(dir) / kWeightsFile).string(), hf, dtype, {{"format", "pt"}});
  write_file_atomically((fs::path(dir) / kConfigFile).string(), config);
}

}  // namespace slmc
