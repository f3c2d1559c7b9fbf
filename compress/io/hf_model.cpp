// Hugging Face checkpoints: config.json <-> ModelSpec and HF tensor names <-> canonical names, for
// the families whose HF layout is the plain Llama one (llama, mistral, qwen2).
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
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
};
constexpr HfArch kHfArchs[] = {
    {Family::kLlama, "llama", "LlamaForCausalLM", 2048, false},
    {Family::kMistral, "mistral", "MistralForCausalLM", 4096 * 32, false},
    {Family::kQwen2, "qwen2", "Qwen2ForCausalLM", 32768, true},
};
constexpr double kDefaultRmsNormEps = 1e-6;      // LlamaConfig, MistralConfig, Qwen2Config
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

// HF per-layer names (after "model.layers.{i}.") <-> canonical suffixes: the one mapping table.
struct NamePair {
  const char* hf;
  const char* canonical;
};
constexpr NamePair kBlockNames[] = {
    {"input_layernorm.weight", names::kAttnNorm},
    {"self_attn.q_proj.weight", names::kAttnQ},
    {"self_attn.k_proj.weight", names::kAttnK},
    {"self_attn.v_proj.weight", names::kAttnV},
    {"self_attn.o_proj.weight", names::kAttnOut},
    {"self_attn.q_proj.bias", names::kAttnQBias},
    {"self_attn.k_proj.bias", names::kAttnKBias},
    {"self_attn.v_proj.bias", names::kAttnVBias},
    {"self_attn.o_proj.bias", names::kAttnOutBias},
    {"post_attention_layernorm.weight", names::kFfnNorm},
    {"mlp.gate_proj.weight", names::kFfnGate},
    {"mlp.up_proj.weight", names::kFfnUp},
    {"mlp.down_proj.weight", names::kFfnDown},
    {"mlp.gate_proj.bias", names::kFfnGateBias},
    {"mlp.up_proj.bias", names::kFfnUpBias},
    {"mlp.down_proj.bias", names::kFfnDownBias},
};
constexpr NamePair kGlobalNames[] = {
    {"model.embed_tokens.weight", names::kTokenEmbd},
    {"model.norm.weight", names::kOutputNorm},
    {"lm_head.weight", names::kOutput},
};
constexpr const char* kLayerPrefix = "model.layers.";
// Old checkpoints saved the RoPE frequencies as a buffer; they follow from rope_theta.
constexpr const char* kRotaryInvFreq = "self_attn.rotary_emb.inv_freq";

enum class NameKind { kTensor, kIgnore, kUnknown };

// HF name -> canonical name. kIgnore for tensors the spec derives (tied lm_head, inv_freq).
NameKind hf_to_canonical(const std::string& hf, const ModelSpec& spec, std::string* canonical) {
  for (const NamePair& p : kGlobalNames) {
    if (hf != p.hf) continue;
    if (spec.tied_embeddings && std::string(p.canonical) == names::kOutput)
      return NameKind::kIgnore;
    *canonical = p.canonical;
    return NameKind::kTensor;
  }
  const std::string prefix = kLayerPrefix;
  if (hf.compare(0, prefix.size(), prefix) != 0) return NameKind::kUnknown;
  size_t pos = prefix.size();
  int64_t layer = 0;
  const size_t digits_begin = pos;
  while (pos < hf.size() && hf[pos] >= '0' && hf[pos] <= '9' && pos - digits_begin < 9) {
    layer = layer * 10 + (hf[pos] - '0');
    ++pos;
  }
  if (pos == digits_begin || pos >= hf.size() || hf[pos] != '.') return NameKind::kUnknown;
  if (pos - digits_begin > 1 && hf[digits_begin] == '0') return NameKind::kUnknown;  // "01"
  if (layer >= spec.n_layer()) return NameKind::kUnknown;
  const std::string rest = hf.substr(pos + 1);
  if (rest == kRotaryInvFreq) return NameKind::kIgnore;
  for (const NamePair& p : kBlockNames) {
    if (rest == p.hf) {
      *canonical = names::blk(layer, p.canonical);
      return NameKind::kTensor;
    }
  }
  return NameKind::kUnknown;
}

// Canonical name -> HF name; "" if the name is not one of ours.
std::string canonical_to_hf(const std::string& name) {
  for (const NamePair& p : kGlobalNames)
    if (name == p.canonical) return p.hf;
  const std::string prefix = "blk.";
  if (name.compare(0, prefix.size(), prefix) != 0) return "";
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = name.substr(prefix.size(), dot - prefix.size());
  const std::string suffix = name.substr(dot + 1);
  for (const NamePair& p : kBlockNames)
    if (suffix == p.canonical) return kLayerPrefix + layer + "." + p.hf;
  return "";
}

// Typed access to config.json keys; every error names the file, the key and the value.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& origin, std::string prefix = "")
      : j_(j), origin_(origin), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const json& at(const char* key) const { return j_.at(key); }

  int64_t req_int(const char* key) const {
    SLMC_CHECK(j_.contains(key), origin_, ": missing required key '", prefix_, key, "'");
    return to_int(key, j_.at(key));
  }
  int64_t req_positive(const char* key) const {
    const int64_t v = req_int(key);
    SLMC_CHECK(v > 0, origin_, ": key '", prefix_, key, "' must be > 0, got ", v);
    return v;
  }
  int64_t opt_positive(const char* key, int64_t def) const {
    if (!has(key)) return def;
    const int64_t v = to_int(key, j_.at(key));
    SLMC_CHECK(v > 0, origin_, ": key '", prefix_, key, "' must be > 0, got ", v);
    return v;
  }
  double req_number(const char* key) const {
    SLMC_CHECK(j_.contains(key), origin_, ": missing required key '", prefix_, key, "'");
    return to_number(key, j_.at(key));
  }
  double opt_number(const char* key, double def) const {
    return has(key) ? to_number(key, j_.at(key)) : def;
  }
  bool opt_bool(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    SLMC_CHECK(v.is_boolean(), origin_, ": key '", prefix_, key, "' must be true or false, got ",
               v.dump());
    return v.get<bool>();
  }
  std::string req_string(const char* key) const {
    SLMC_CHECK(j_.contains(key), origin_, ": missing required key '", prefix_, key, "'");
    const json& v = j_.at(key);
    SLMC_CHECK(v.is_string(), origin_, ": key '", prefix_, key, "' must be a string, got ",
               v.dump());
    return v.get<std::string>();
  }
  // A token id: an integer, null (-1: none), or a list whose first element is used (HF allows
  // several eos ids; ModelSpec keeps one).
  int64_t opt_token_id(const char* key, int64_t def) const {
    if (!j_.contains(key)) return def;
    const json& v = j_.at(key);
    if (v.is_null()) return -1;
    if (v.is_array()) {
      SLMC_CHECK(!v.empty(), origin_, ": key '", prefix_, key, "' is an empty list");
      return to_token(key, v.at(0));
    }
    return to_token(key, v);
  }

 private:
  int64_t to_int(const char* key, const json& v) const {
    SLMC_CHECK(v.is_number_integer() && (!v.is_number_unsigned() ||
                                         v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)),
               origin_, ": key '", prefix_, key, "' must be an integer, got ", v.dump());
    return v.get<int64_t>();
  }
  double to_number(const char* key, const json& v) const {
    SLMC_CHECK(v.is_number(), origin_, ": key '", prefix_, key, "' must be a number, got ",
               v.dump());
    return v.get<double>();
  }
  int64_t to_token(const char* key, const json& v) const {
    const int64_t id = to_int(key, v);
    SLMC_CHECK(id >= 0, origin_, ": key '", prefix_, key, "' must be a token id >= 0, got ", id);
    return id;
  }

  const json& j_;
  const std::string& origin_;
  std::string prefix_;
};

// rope_scaling: null, {"rope_type"|"type": "default"} or the llama3 parameters.
RopeScaling parse_rope_scaling(const json& rs, const std::string& origin, const char* key) {
  RopeScaling out;
  if (rs.is_null()) return out;
  SLMC_CHECK(rs.is_object(), origin, ": key '", key, "' must be null or an object, got ",
             rs.dump());
  const std::string prefix = std::string(key) + ".";
  const ConfigReader r(rs, origin, prefix);
  const char* type_key = r.has("rope_type") ? "rope_type" : "type";
  SLMC_CHECK(r.has(type_key), origin, ": key '", key, "' has no 'rope_type' (or 'type')");
  const std::string type = r.req_string(type_key);
  if (type == "default") return out;
  SLMC_CHECK(type == "llama3", origin, ": unsupported ", prefix, type_key, " '", type,
             "' (supported: llama3, default)");
  out.type = "llama3";
  out.factor = r.req_number("factor");
  out.low_freq_factor = r.req_number("low_freq_factor");
  out.high_freq_factor = r.req_number("high_freq_factor");
  out.original_max_position = r.req_positive("original_max_position_embeddings");
  return out;
}

}  // namespace

ModelSpec parse_hf_config(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(origin, ": not valid JSON: ", e.what());
  }
  SLMC_CHECK(j.is_object(), origin, ": expected a JSON object, got ", j.type_name());
  const ConfigReader r(j, origin);

  const std::string model_type = r.req_string("model_type");
  const HfArch* arch = nullptr;
  for (const HfArch& a : kHfArchs)
    if (model_type == a.model_type) arch = &a;
  SLMC_CHECK(arch != nullptr, origin, ": unsupported model_type '", model_type,
             "' (supported: ", supported_model_types(), ")");

  ModelSpec spec;
  spec.family = arch->family;
  spec.d_model = r.req_positive("hidden_size");
  const int64_t ffn_dim = r.req_positive("intermediate_size");
  const int64_t n_layer = r.req_positive("num_hidden_layers");
  const int64_t n_head = r.req_positive("num_attention_heads");
  const int64_t n_kv_head = r.opt_positive("num_key_value_heads", n_head);
  SLMC_CHECK(n_head % n_kv_head == 0, origin, ": num_attention_heads ", n_head,
             " is not a multiple of num_key_value_heads ", n_kv_head);
  int64_t head_dim = 0;
  if (r.has("head_dim")) {
    head_dim = r.opt_positive("head_dim", 0);
  } else {
    SLMC_CHECK(spec.d_model % n_head == 0, origin, ": hidden_size ", spec.d_model,
               " is not divisible by num_attention_heads ", n_head, " (and no head_dim is given)");
    head_dim = spec.d_model / n_head;
  }
  spec.vocab = r.req_positive("vocab_size");
  spec.max_seq = r.opt_positive("max_position_embeddings", arch->default_max_position);
  spec.norm_eps = r.opt_number("rms_norm_eps", kDefaultRmsNormEps);
  SLMC_CHECK(spec.norm_eps > 0 && spec.norm_eps < 1, origin,
             ": key 'rms_norm_eps' out of range: ", spec.norm_eps);
  spec.tied_embeddings = r.opt_bool("tie_word_embeddings", false);
  spec.bos_id = r.opt_token_id("bos_token_id", spec.bos_id);
  spec.eos_id = r.opt_token_id("eos_token_id", spec.eos_id);
  if (r.has("hidden_act")) {
    const std::string act = r.req_string("hidden_act");
    SLMC_CHECK(activation_from_name(act, &spec.act), origin, ": unsupported hidden_act '", act,
               "'");
  }

  // RoPE: transformers < 5 writes rope_theta + rope_scaling; >= 5 writes rope_parameters.
  double rope_theta = r.opt_number("rope_theta", 10000.0);
  if (r.has("rope_scaling")) {
    spec.rope_scaling = parse_rope_scaling(r.at("rope_scaling"), origin, "rope_scaling");
  } else if (r.has("rope_parameters")) {
    spec.rope_scaling = parse_rope_scaling(r.at("rope_parameters"), origin, "rope_parameters");
    const ConfigReader rp(r.at("rope_parameters"), origin, "rope_parameters.");
    rope_theta = rp.opt_number("rope_theta", rope_theta);
  }
  SLMC_CHECK(rope_theta > 0, origin, ": key 'rope_theta' must be > 0, got ", rope_theta);

  LayerSpec layer;
  layer.n_head = n_head;
  layer.n_kv_head = n_kv_head;
  layer.head_dim = head_dim;
  layer.ffn_dim = ffn_dim;
  layer.rope_theta = rope_theta;
  layer.attn_qkv_bias = arch->qkv_bias;
  if (arch->family == Family::kLlama) {
    // LlamaAttention puts `attention_bias` on q, k, v and o alike.
    layer.attn_qkv_bias = layer.attn_out_bias = r.opt_bool("attention_bias", false);
    layer.mlp_bias = r.opt_bool("mlp_bias", false);
  }
  spec.layers.assign(static_cast<size_t>(n_layer), layer);

  if (arch->family == Family::kMistral) {
    // MistralConfig: sliding_window (default 4096) on every layer; null means full attention.
    const int64_t window = r.has("sliding_window")        ? r.opt_positive("sliding_window", 0)
                           : j.contains("sliding_window") ? 0
                                                          : kDefaultSlidingWindow;
    for (LayerSpec& l : spec.layers) l.window = window;
  } else if (arch->family == Family::kQwen2) {
    // Qwen2Config: sliding_window counts only if use_sliding_window; then it applies to the
    // layers listed as "sliding_attention" in layer_types, or by default to layers
    // i >= max_window_layers.
    const bool use_sliding = r.opt_bool("use_sliding_window", false);
    int64_t window = 0;
    if (use_sliding) {
      window = r.has("sliding_window")        ? r.opt_positive("sliding_window", 0)
               : j.contains("sliding_window") ? 0
                                              : kDefaultSlidingWindow;
    }
    if (r.has("layer_types")) {
      const json& types = r.at("layer_types");
      SLMC_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == n_layer, origin,
                 ": key 'layer_types' must be a list of ", n_layer, " strings, got ", types.dump());
      for (int64_t i = 0; i < n_layer; ++i) {
        const json& t = types[static_cast<size_t>(i)];
        const bool sliding = t.is_string() && t.get<std::string>() == "sliding_attention";
        SLMC_CHECK(sliding || (t.is_string() && t.get<std::string>() == "full_attention"), origin,
                   ": layer_types[", i,
                   "] must be \"full_attention\" or \"sliding_attention\", got ", t.dump());
        spec.layers[static_cast<size_t>(i)].window = sliding ? window : 0;
      }
    } else if (window > 0) {
      const int64_t max_window_layers = r.has("max_window_layers") ? r.req_int("max_window_layers")
                                                                   : kDefaultQwen2MaxWindowLayers;
      SLMC_CHECK(max_window_layers >= 0, origin, ": key 'max_window_layers' must be >= 0, got ",
                 max_window_layers);
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
  SLMC_CHECK(arch != nullptr, "Hugging Face config: family '", family_name(spec.family),
             "' is not supported (supported: ", supported_model_types(), ")");
  spec.validate();
  const LayerSpec& l0 = spec.layers.front();
  const std::string what = str_cat("Hugging Face ", arch->model_type, " config");
  for (size_t i = 1; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    SLMC_CHECK(l.n_head == l0.n_head && l.n_kv_head == l0.n_kv_head && l.head_dim == l0.head_dim &&
                   l.ffn_dim == l0.ffn_dim && l.attn_qkv_bias == l0.attn_qkv_bias &&
                   l.attn_out_bias == l0.attn_out_bias && l.mlp_bias == l0.mlp_bias &&
                   l.rope_theta == l0.rope_theta,
               what, ": layer ", i, " differs from layer 0 (n_head ", l.n_head, " vs ", l0.n_head,
               ", n_kv_head ", l.n_kv_head, " vs ", l0.n_kv_head, ", head_dim ", l.head_dim, " vs ",
               l0.head_dim, ", ffn_dim ", l.ffn_dim, " vs ", l0.ffn_dim,
               "); config.json holds one shape for all layers");
  }
  const char* torch_dtype = dtype == DType::kF32    ? "float32"
                            : dtype == DType::kF16  ? "float16"
                            : dtype == DType::kBF16 ? "bfloat16"
                                                    : nullptr;
  SLMC_CHECK(torch_dtype != nullptr, what, ": cannot store weights as ", dtype_name(dtype));

  json j = json::object();
  j["architectures"] = {arch->architecture};
  j["model_type"] = arch->model_type;
  j["hidden_size"] = spec.d_model;
  j["intermediate_size"] = l0.ffn_dim;
  j["num_hidden_layers"] = spec.n_layer();
  j["num_attention_heads"] = l0.n_head;
  j["num_key_value_heads"] = l0.n_kv_head;
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

  // HF tensor name -> shard file name (relative to dir).
  std::map<std::string, std::string> weight_map;
  const std::string single = (fs::path(dir) / kWeightsFile).string();
  const std::string index_path = (fs::path(dir) / kIndexFile).string();
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;
  if (fs::is_regular_file(single, ec)) {
    auto f = std::make_unique<SafetensorsFile>(single);
    for (const auto& kv : f->entries()) weight_map[kv.first] = kWeightsFile;
    shards[kWeightsFile] = std::move(f);
  } else {
    SLMC_CHECK(fs::is_regular_file(index_path, ec), dir, ": no ", kWeightsFile, " or ", kIndexFile);
    json index;
    try {
      index = json::parse(read_file(index_path));
    } catch (const json::exception& e) {
      fail(index_path, ": not valid JSON: ", e.what());
    }
    SLMC_CHECK(
        index.is_object() && index.contains("weight_map") && index.at("weight_map").is_object(),
        index_path, ": missing object 'weight_map'");
    for (const auto& kv : index.at("weight_map").items()) {
      SLMC_CHECK(kv.value().is_string(), index_path, ": weight_map['", kv.key(),
                 "'] must be a file name, got ", kv.value().dump());
      const std::string shard = kv.value().get<std::string>();
      // Shards live beside the index; a path could point anywhere.
      SLMC_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                     shard.find('\\') == std::string::npos && shard != "." && shard != "..",
                 index_path, ": weight_map['", kv.key(), "'] = '", shard,
                 "' is not a plain file name in the model directory");
      weight_map[kv.key()] = shard;
    }
    for (const auto& kv : weight_map) {
      if (shards.count(kv.second)) continue;
      const std::string shard_path = (fs::path(dir) / kv.second).string();
      SLMC_CHECK(fs::is_regular_file(shard_path, ec), index_path, ": tensor '", kv.first,
                 "' is mapped to shard '", kv.second, "', which does not exist");
      shards[kv.second] = std::make_unique<SafetensorsFile>(shard_path);
    }
  }

  for (const auto& kv : weight_map) {
    const std::string& hf_name = kv.first;
    const SafetensorsFile& shard = *shards.at(kv.second);
    SLMC_CHECK(shard.has(hf_name), shard.path(), ": tensor '", hf_name, "' listed in ", kIndexFile,
               " is not in this shard");
    std::string canonical;
    const NameKind kind = hf_to_canonical(hf_name, m.spec, &canonical);
    SLMC_CHECK(kind != NameKind::kUnknown, shard.path(), ": unknown tensor '", hf_name, "' for a ",
               family_name(m.spec.family), " model with ", m.spec.n_layer(), " layers");
    if (kind == NameKind::kIgnore) continue;
    HostTensor t = shard.read(hf_name);
    const SafetensorsEntry& e = shard.entries().at(hf_name);
    m.bytes_by_dtype[dtype_name(e.dtype)] += static_cast<int64_t>(e.end - e.begin);
    m.tensors.emplace(canonical, std::move(t));
  }
  check_tensors(m.spec, m.tensors, dir);
  return m;
}

void save_hf_model(const std::string& dir, const ModelSpec& spec, const TensorMap& tensors,
                   DType dtype) {
  const std::string config = hf_config_json(spec, dtype);  // rejects what HF cannot express
  check_tensors(spec, tensors, dir);
  std::map<std::string, const HostTensor*> by_hf_name;  // sorted by HF name, like HF's writer
  for (const auto& kv : tensors) {
    const std::string name = canonical_to_hf(kv.first);
    SLMC_CHECK(!name.empty(), dir, ": no Hugging Face name for tensor ", kv.first);
    by_hf_name.emplace(name, &kv.second);
  }
  std::vector<NamedTensor> hf;
  for (const auto& kv : by_hf_name) hf.push_back({kv.first, kv.second});
  std::error_code ec;
  fs::create_directories(dir, ec);
  SLMC_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create directory: ", ec.message());
  // Weights first: a directory whose config.json is new always has matching weights.
  write_safetensors((fs::path(dir) / kWeightsFile).string(), hf, dtype, {{"format", "pt"}});
  write_file_atomically((fs::path(dir) / kConfigFile).string(), config);
}

}  // namespace slmc
