#include "export/format/gguf_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/tokenizer/hf_tokenizer.h"
#include "compress/tokenizer/llama2c_tokenizer.h"
#include "compress/tokenizer/sentencepiece.h"

namespace slmc::format {

namespace {

// llama.cpp's token types (llama_token_type / gguf-py TokenType).
constexpr int64_t kTokNormal = 1, kTokUnknown = 2, kTokControl = 3, kTokUserDefined = 4,
                  kTokUnused = 5, kTokByte = 6;

// Keys that extend GGUF for what llama.cpp computes into tensors (llama3 RoPE) and slmc needs back.
constexpr const char* kKeyLlama3 = "slmc.rope_scaling.llama3";  // [factor, low, high, orig ctx]

bool layers_uniform(const ModelSpec& s) {
  const LayerSpec& a = s.layers[0];
  for (const LayerSpec& l : s.layers)
    if (l.n_head != a.n_head || l.n_kv_head != a.n_kv_head || l.ffn_dim != a.ffn_dim) return false;
  return true;
}

bool all_layers(const ModelSpec& s, bool (*pred)(const LayerSpec&)) {
  return std::all_of(s.layers.begin(), s.layers.end(), pred);
}

std::string k(const GgufArch& a, const char* key) { return a.name + "." + key; }

// Bytes of one code point as UTF-8 (for the "▁" of SentencePiece).
constexpr const char* kSpmSpace = "\xe2\x96\x81";

// ---- protobuf writer for a minimal SentencePiece ModelProto (tokenizer round trip) ----
void pb_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void pb_key(std::string& out, int field, int wire) { pb_varint(out, (static_cast<uint64_t>(field) << 3) | wire); }
void pb_bytes(std::string& out, int field, const std::string& s) {
  pb_key(out, field, 2);
  pb_varint(out, s.size());
  out += s;
}
void pb_int(std::string& out, int field, int64_t v) {
  pb_key(out, field, 0);
  pb_varint(out, static_cast<uint64_t>(v));
}
void pb_float(std::string& out, int field, float v) {
  pb_key(out, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

}  // namespace

GgufArch gguf_arch_for(const ModelSpec& spec) {
  spec.validate();
  const LayerSpec& l0 = spec.layers[0];
  const bool uniform = layers_uniform(spec);
  const char* fam = family_name(spec.family);
  for (const LayerSpec& l : spec.layers)
    SLMC_CHECK(l.head_dim == l0.head_dim, "gguf export: layers differ in head_dim (", l0.head_dim,
               " and ", l.head_dim, "): llama.cpp has one head size per model");
  auto refuse_if = [&](bool cond, const std::string& why) {
    SLMC_CHECK(!cond, "gguf export: ", fam, " model: ", why, "; llama.cpp cannot run it as written");
  };
  const bool default_scale = all_layers(spec, [](const LayerSpec& l) { return l.attn_scale == 0; });
  const bool no_qk_norm = all_layers(spec, [](const LayerSpec& l) { return !l.qk_norm; });
  const bool no_post = all_layers(spec, [](const LayerSpec& l) { return !l.post_norms; });
  const bool all_scaled = all_layers(spec, [](const LayerSpec& l) { return l.rope_scaled; });
  const bool same_theta = std::all_of(spec.layers.begin(), spec.layers.end(),
                                      [&](const LayerSpec& l) { return l.rope_theta == l0.rope_theta; });
  const bool no_out_bias = all_layers(spec, [](const LayerSpec& l) { return !l.attn_out_bias; });
  const bool no_mlp_bias = all_layers(spec, [](const LayerSpec& l) { return !l.mlp_bias; });
  const bool no_moe = all_layers(spec, [](const LayerSpec& l) { return !l.is_moe(); });
  const bool same_qkv_bias = std::all_of(spec.layers.begin(), spec.layers.end(), [&](const LayerSpec& l) {
    return l.attn_qkv_bias == l0.attn_qkv_bias;
  });
  refuse_if(spec.embed_scale != 1.0 && spec.family != Family::kGemma3, "an embedding scale");
  refuse_if(!same_qkv_bias, "q/k/v biases on some layers only");
  GgufArch a;
  switch (spec.family) {
    case Family::kLlama:
    case Family::kMistral:
    case Family::kMixtral:
    case Family::kQwen2: {
      refuse_if(!default_scale, "a softmax scale other than 1/sqrt(head_dim)");
      refuse_if(!no_qk_norm || !no_post, "q/k norms or post-sublayer norms");
      refuse_if(!same_theta || !all_scaled, "per-layer RoPE settings");
      refuse_if(spec.act != Activation::kSilu, "an activation other than SiLU");
      if (spec.family == Family::kQwen2) {
        refuse_if(!l0.attn_qkv_bias, "no q/k/v biases (llama.cpp's qwen2 has them)");
        refuse_if(!no_out_bias || !no_mlp_bias, "output or MLP biases");
        if (uniform) {
          a.name = "qwen2";
          return a;
        }
      }
      refuse_if(spec.rope_scaling.type == "llama3" && !uniform,
                "llama3 RoPE scaling with per-layer widths");
      if (!uniform) {
        refuse_if(!no_moe, "experts with per-layer widths");
        a.name = "deci";
        a.rope_interleaved = true;
        return a;
      }
      a.name = "llama";
      a.rope_interleaved = true;
      return a;
    }
    case Family::kPhi3:
      refuse_if(!default_scale || !no_qk_norm || !no_post || !same_theta || !all_scaled,
                "attention settings phi3 does not have");
      refuse_if(!uniform, "per-layer widths (llama.cpp's phi3 has one width)");
      refuse_if(l0.n_head * l0.head_dim != spec.d_model,
                "n_head * head_dim != d_model (llama.cpp's phi3 needs a square attn_output)");
      refuse_if(l0.attn_qkv_bias || !no_out_bias || !no_mlp_bias, "biases");
      refuse_if(spec.rope_scaling.type != "none", "RoPE scaling");
      a.name = "phi3";
      return a;
    case Family::kGemma3: {
      refuse_if(!uniform, "per-layer widths (llama.cpp's gemma3 has one width)");
      refuse_if(spec.embed_scale != std::sqrt(static_cast<double>(spec.d_model)),
                "an embedding scale other than sqrt(d_model)");
      refuse_if(spec.act != Activation::kGeluTanh, "an activation other than GELU (tanh)");
      for (const LayerSpec& l : spec.layers) {
        refuse_if(!l.qk_norm || !l.post_norms, "a layer without q/k norms or post-sublayer norms");
        refuse_if(std::fabs(l.softmax_scale() - 1.0 / std::sqrt(static_cast<double>(l.head_dim))) >
                      1e-12,
                  "a softmax scale other than 1/sqrt(head_dim) (llama.cpp's gemma3 fixes it)");
        refuse_if(l.attn_qkv_bias || l.attn_out_bias || l.mlp_bias, "biases");
      }
      int64_t window = 0;
      for (const LayerSpec& l : spec.layers) {
        if (l.window == 0) {
          refuse_if(!l.rope_scaled, "a global layer without the model's RoPE scaling");
          continue;
        }
        refuse_if(window != 0 && l.window != window, "sliding windows of different sizes");
        window = l.window;
        refuse_if(l.rope_scaled && spec.rope_scaling.type != "none",
                  "a sliding-window layer with RoPE scaling");
      }
      // One theta for the global layers, one for the local ones.
      double global = -1, local = -1;
      for (const LayerSpec& l : spec.layers) {
        double& t = l.window ? local : global;
        refuse_if(t >= 0 && t != l.rope_theta, "layers of one kind with different RoPE bases");
        t = l.rope_theta;
      }
      refuse_if(spec.rope_scaling.type == "llama3", "llama3 RoPE scaling");
      a.name = "gemma3";
      return a;
    }
    case Family::kOpenELM:
      refuse_if(!default_scale || !no_post || !same_theta || !all_scaled, "attention settings");
      refuse_if(!all_layers(spec, [](const LayerSpec& l) { return l.qk_norm; }),
                "layers without q/k norms (llama.cpp's openelm has them)");
      refuse_if(!spec.tied_embeddings, "an untied output head (llama.cpp's openelm ties it)");
      refuse_if(l0.attn_qkv_bias || !no_out_bias || !no_mlp_bias || !no_moe, "biases or experts");
      refuse_if(spec.rope_scaling.type != "none", "RoPE scaling");
      a.name = "openelm";
      return a;
  }
  fail("gguf export: family ", fam, " has no llama.cpp architecture");
}

int64_t gguf_rope_source_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, i = r % head_dim;
  const int64_t j = i / 2, t = i % 2;
  return h * head_dim + t * (head_dim / 2) + j;
}

std::vector<GgufTensorPlan> gguf_tensor_plan(const ModelSpec& spec, const GgufArch& arch) {
  std::vector<GgufTensorPlan> out;
  std::map<std::string, TensorDecl> decls;
  for (const TensorDecl& d : expected_tensors(spec)) decls[d.name] = d;
  auto one = [&](const std::string& canonical, const std::string& gguf_name, int64_t rope_hd = 0) {
    const TensorDecl& d = decls.at(canonical);
    GgufTensorPlan p;
    p.name = gguf_name;
    p.parts = {canonical};
    p.cols = d.shape.back();
    p.part_rows = {d.shape.size() == 2 ? d.shape[0] : 1};
    p.shape = d.shape;
    p.rope_head_dim = rope_hd;
    p.matrix = d.shape.size() == 2 && (d.is_linear || d.name == names::kTokenEmbd);
    out.push_back(std::move(p));
  };
  // Rows of several canonical matrices (same width) as one tensor of `shape`.
  auto fused = [&](const std::vector<std::string>& parts, const std::string& gguf_name,
                   std::vector<int64_t> shape) {
    GgufTensorPlan p;
    p.name = gguf_name;
    p.parts = parts;
    for (const std::string& c : parts) p.part_rows.push_back(decls.at(c).shape[0]);
    p.cols = decls.at(parts[0]).shape[1];
    p.shape = std::move(shape);
    p.matrix = true;
    out.push_back(std::move(p));
  };
  one(names::kTokenEmbd, names::kTokenEmbd);
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    const LayerSpec& l = spec.layers[static_cast<size_t>(i)];
    auto b = [&](const char* s) { return names::blk(i, s); };
    const int64_t rope_hd = arch.rope_interleaved ? l.head_dim : 0;
    one(b(names::kAttnNorm), b(names::kAttnNorm));
    if (arch.name == "openelm") {
      const int64_t rows = (l.n_head + 2 * l.n_kv_head) * l.head_dim;
      fused({b(names::kAttnQ), b(names::kAttnK), b(names::kAttnV)}, b("attn_qkv.weight"),
            {rows, spec.d_model});
    } else {
      one(b(names::kAttnQ), b(names::kAttnQ), rope_hd);
      one(b(names::kAttnK), b(names::kAttnK), rope_hd);
      one(b(names::kAttnV), b(names::kAttnV));
    }
    if (l.attn_qkv_bias) {
      // A bias follows its projection's rows: one row per value, so heads permute the same way.
      for (auto [bn, hd] : {std::pair{names::kAttnQBias, rope_hd}, std::pair{names::kAttnKBias, rope_hd},
                            std::pair{names::kAttnVBias, int64_t{0}}}) {
        const TensorDecl& d = decls.at(b(bn));
        GgufTensorPlan p;
        p.name = b(bn);
        p.parts = {d.name};
        p.cols = 1;
        p.part_rows = {d.shape[0]};
        p.shape = d.shape;
        p.rope_head_dim = hd;
        out.push_back(std::move(p));
      }
    }
    if (l.qk_norm) {
      one(b(names::kAttnQNorm), b(names::kAttnQNorm));
      one(b(names::kAttnKNorm), b(names::kAttnKNorm));
    }
    one(b(names::kAttnOut), b(names::kAttnOut));
    if (l.attn_out_bias) one(b(names::kAttnOutBias), b(names::kAttnOutBias));
    if (l.post_norms) one(b(names::kAttnPostNorm), b(names::kAttnPostNorm));
    one(b(names::kFfnNorm), b(names::kFfnNorm));
    if (l.is_moe()) {
      one(b(names::kFfnRouter), b(names::kFfnRouter));
      for (const char* s : {names::kFfnGate, names::kFfnUp, names::kFfnDown}) {
        std::vector<std::string> parts;
        for (int64_t e = 0; e < l.n_expert; ++e) parts.push_back(names::expert(i, e, s));
        const TensorDecl& d = decls.at(parts[0]);
        const std::string base(s, std::strlen(s) - std::strlen(".weight"));
        fused(parts, names::blk(i, (base + "_exps.weight").c_str()),
              {l.n_expert, d.shape[0], d.shape[1]});
      }
    } else if (arch.name == "phi3") {
      fused({b(names::kFfnGate), b(names::kFfnUp)}, b(names::kFfnUp), {2 * l.ffn_dim, spec.d_model});
      one(b(names::kFfnDown), b(names::kFfnDown));
    } else {
      one(b(names::kFfnGate), b(names::kFfnGate));
      one(b(names::kFfnUp), b(names::kFfnUp));
      one(b(names::kFfnDown), b(names::kFfnDown));
    }
    if (l.post_norms) one(b(names::kFfnPostNorm), b(names::kFfnPostNorm));
    if (l.mlp_bias) {
      one(b(names::kFfnGateBias), b(names::kFfnGateBias));
      one(b(names::kFfnUpBias), b(names::kFfnUpBias));
      one(b(names::kFfnDownBias), b(names::kFfnDownBias));
    }
  }
  one(names::kOutputNorm, names::kOutputNorm);
  if (!spec.tied_embeddings) one(names::kOutput, names::kOutput);
  return out;
}

GgufArch gguf_file_arch(const GgufFile& f) {
  GgufArch a;
  a.name = f.get_str("general.architecture");
  a.rope_interleaved = a.name == "llama" || a.name == "deci";
  return a;
}

std::map<std::string, GgufSource> gguf_sources(const GgufFile& f, const ModelSpec& spec) {
  const std::string& o = f.path();
  const GgufArch arch = gguf_file_arch(f);
  std::map<std::string, GgufSource> out;
  std::set<std::string> used;
  for (const GgufTensorPlan& p : gguf_tensor_plan(spec, arch)) {
    const GgufTensor* t = f.find(p.name);
    SLMC_CHECK(t != nullptr, o, ": GGUF has no tensor ", p.name, " (", arch.name, " with ",
               spec.n_layer(), " layers needs it)");
    // A 1-D tensor's values are its rows here (cols 1); a matrix's rows are rows.
    SLMC_CHECK(t->shape == p.shape, o, ": GGUF tensor ", p.name, " has shape ", shape_str(t->shape),
               ", the metadata implies ", shape_str(p.shape));
    used.insert(p.name);
    int64_t row0 = 0;
    for (size_t k = 0; k < p.parts.size(); ++k) {
      GgufSource s;
      s.tensor = t;
      s.format = t->format;
      s.row0 = row0;
      s.rows = p.part_rows[k];
      s.cols = p.cols;
      s.rope_head_dim = p.rope_head_dim;
      row0 += s.rows;
      SLMC_CHECK(p.cols == 1 ? t->format == codec::Format::kF32 : true, o, ": GGUF tensor ", p.name,
                 " is ", codec::format_info(t->format).name, "; slmc reads 1-D tensors as f32 only");
      out[p.parts[k]] = s;
    }
  }
  if (f.find("rope_freqs.weight")) used.insert("rope_freqs.weight");
  for (const GgufTensor& t : f.tensors())
    SLMC_CHECK(used.count(t.name), o, ": unexpected GGUF tensor ", t.name, " for ", arch.name);
  for (const TensorDecl& d : expected_tensors(spec)) out.at(d.name).shape = d.shape;
  return out;
}

void gguf_read_rows(const GgufFile& f, const GgufSource& s, uint8_t* dst) {
  const size_t rb = s.cols == 1 ? 4 : codec::row_bytes(s.format, s.cols);
  const uint8_t* base = f.data(*s.tensor) + static_cast<size_t>(s.row0) * rb;
  if (s.rope_head_dim == 0) {
    std::memcpy(dst, base, rb * static_cast<size_t>(s.rows));
    return;
  }
  // Stored row r holds canonical row gguf_rope_source_row(r).
  for (int64_t r = 0; r < s.rows; ++r)
    std::memcpy(dst + static_cast<size_t>(gguf_rope_source_row(r, s.rope_head_dim)) * rb,
                base + static_cast<size_t>(r) * rb, rb);
}

std::vector<GgufExtraTensor> gguf_extra_tensors(const ModelSpec& spec, const GgufArch& arch) {
  std::vector<GgufExtraTensor> out;
  const RopeScaling& rs = spec.rope_scaling;
  if (rs.type != "llama3") return out;
  // convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: llama.cpp divides each frequency by
  // its factor (ggml_rope_ext's freq_factors).
  const LayerSpec& l = spec.layers[0];
  const int64_t dim = l.head_dim;
  GgufExtraTensor t;
  t.name = "rope_freqs.weight";
  const double low_wavelen = static_cast<double>(rs.original_max_position) / rs.low_freq_factor;
  const double high_wavelen = static_cast<double>(rs.original_max_position) / rs.high_freq_factor;
  for (int64_t i = 0; i < dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(l.rope_theta),
                                       static_cast<float>(i) / static_cast<float>(dim));
    const double wavelen = 2 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1;
    } else if (wavelen > low_wavelen) {
      f = rs.factor;
    } else {
      const double smooth = (static_cast<double>(rs.original_max_position) / wavelen - rs.low_freq_factor) /
                            (rs.high_freq_factor - rs.low_freq_factor);
      f = 1 / ((1 - smooth) / rs.factor + smooth);
    }
    t.data.push_back(static_cast<float>(f));
  }
  out.push_back(std::move(t));
  (void)arch;
  return out;
}

void add_gguf_model_kv(const ModelSpec& spec, const GgufArch& a, GgufWriter& w) {
  const LayerSpec& l0 = spec.layers[0];
  w.add_kv("general.architecture", GgufValue::str(a.name));
  // Not the family's name: llama.cpp keys vocabulary quirks on general.name (a name containing
  // "phi3" makes it look up <unk>, <s> and <|endoftext|>, which a byte vocabulary lacks).
  w.add_kv("general.name", GgufValue::str("slmc export"));
  w.add_kv("general.quantization_version", GgufValue::u32(2));
  w.add_kv(k(a, "context_length"), GgufValue::u32(static_cast<uint32_t>(spec.max_seq)));
  w.add_kv(k(a, "embedding_length"), GgufValue::u32(static_cast<uint32_t>(spec.d_model)));
  w.add_kv(k(a, "block_count"), GgufValue::u32(static_cast<uint32_t>(spec.n_layer())));
  w.add_kv(k(a, "vocab_size"), GgufValue::u32(static_cast<uint32_t>(spec.vocab)));
  // Per-layer arrays where layers differ (openelm always writes them, as convert_hf_to_gguf does).
  const bool arrays = !layers_uniform(spec) || a.name == "openelm";
  auto per_layer = [&](const char* key, int64_t LayerSpec::*field) {
    if (!arrays) {
      w.add_kv(k(a, key), GgufValue::u32(static_cast<uint32_t>(l0.*field)));
      return;
    }
    std::vector<int64_t> v;
    for (const LayerSpec& l : spec.layers) v.push_back(l.*field);
    w.add_kv(k(a, key), GgufValue::int_array(GgufType::kInt32, std::move(v)));
  };
  per_layer("feed_forward_length", &LayerSpec::ffn_dim);
  per_layer("attention.head_count", &LayerSpec::n_head);
  per_layer("attention.head_count_kv", &LayerSpec::n_kv_head);
  w.add_kv(k(a, "attention.key_length"), GgufValue::u32(static_cast<uint32_t>(l0.head_dim)));
  w.add_kv(k(a, "attention.value_length"), GgufValue::u32(static_cast<uint32_t>(l0.head_dim)));
  w.add_kv(k(a, "rope.dimension_count"), GgufValue::u32(static_cast<uint32_t>(l0.head_dim)));
  w.add_kv(k(a, "attention.layer_norm_rms_epsilon"), GgufValue::f32(static_cast<float>(spec.norm_eps)));
  double global_theta = l0.rope_theta, local_theta = -1;
  int64_t window = 0;
  for (const LayerSpec& l : spec.layers) {
    if (l.window && a.name == "gemma3") {
      local_theta = l.rope_theta;
      window = l.window;
    } else {
      global_theta = l.rope_theta;
    }
  }
  w.add_kv(k(a, "rope.freq_base"), GgufValue::f32(static_cast<float>(global_theta)));
  const RopeScaling& rs = spec.rope_scaling;
  if (rs.type == "linear") {
    w.add_kv(k(a, "rope.scaling.type"), GgufValue::str("linear"));
    w.add_kv(k(a, "rope.scaling.factor"), GgufValue::f32(static_cast<float>(rs.factor)));
  } else if (rs.type == "llama3") {
    w.add_kv(kKeyLlama3, GgufValue::float_array({rs.factor, rs.low_freq_factor, rs.high_freq_factor,
                                                 static_cast<double>(rs.original_max_position)}));
  }
  if (l0.is_moe()) {
    w.add_kv(k(a, "expert_count"), GgufValue::u32(static_cast<uint32_t>(l0.n_expert)));
    w.add_kv(k(a, "expert_used_count"), GgufValue::u32(static_cast<uint32_t>(l0.n_expert_used)));
  }
  if (a.name == "gemma3" && window > 0) {
    w.add_kv(k(a, "attention.sliding_window"), GgufValue::u32(static_cast<uint32_t>(window)));
    std::vector<int64_t> pattern;
    for (const LayerSpec& l : spec.layers) pattern.push_back(l.window > 0 ? 1 : 0);
    w.add_kv(k(a, "attention.sliding_window_pattern"),
             GgufValue::int_array(GgufType::kBool, std::move(pattern)));
    w.add_kv(k(a, "rope.freq_base_swa"), GgufValue::f32(static_cast<float>(local_theta)));
  }
  // Sliding windows of llama/mistral/qwen2/phi3: llama.cpp runs these architectures with full
  // attention (convert_hf_to_gguf.py writes no window for them either); the README says so.
}

ModelSpec gguf_model_spec(const GgufFile& f) {
  const std::string& o = f.path();
  const std::string arch = f.get_str("general.architecture");
  auto key = [&](const char* s) { return arch + "." + s; };
  ModelSpec s;
  if (arch == "llama" || arch == "deci") {
    s.family = Family::kLlama;
  } else if (arch == "qwen2") {
    s.family = Family::kQwen2;
  } else if (arch == "phi3") {
    s.family = Family::kPhi3;
  } else if (arch == "gemma3") {
    s.family = Family::kGemma3;
  } else if (arch == "openelm") {
    s.family = Family::kOpenELM;
  } else {
    fail(o, ": GGUF architecture '", arch,
         "' is not one slmc runs (llama, deci, qwen2, phi3, gemma3, openelm)");
  }
  const GgufTensor* embd = f.find(names::kTokenEmbd);
  SLMC_CHECK(embd != nullptr && embd->shape.size() == 2, o, ": GGUF has no 2-D ", names::kTokenEmbd);
  s.vocab = embd->shape[0];
  s.d_model = f.get_int(key("embedding_length"));
  SLMC_CHECK(s.d_model == embd->shape[1], o, ": ", key("embedding_length"), " ", s.d_model,
             " differs from ", names::kTokenEmbd, " width ", embd->shape[1]);
  s.max_seq = f.get_int(key("context_length"));
  s.norm_eps = f.get_float(key("attention.layer_norm_rms_epsilon"));
  // The fp32 the file holds, as the double the HF config would have given (1e-5, 1e-6).
  s.norm_eps = std::stod(str_cat(static_cast<float>(s.norm_eps)));
  const int64_t n_layer = f.get_int(key("block_count"));
  SLMC_CHECK(n_layer >= 1 && n_layer <= 4096, o, ": ", key("block_count"), " ", n_layer,
             " outside [1, 4096]");
  s.tied_embeddings = f.find(names::kOutput) == nullptr;
  auto per_layer = [&](const char* name, bool required, int64_t dflt) {
    std::vector<int64_t> v(static_cast<size_t>(n_layer), dflt);
    const GgufValue* x = f.find_kv(key(name));
    if (x == nullptr) {
      SLMC_CHECK(!required, o, ": GGUF metadata has no '", key(name), "'");
      return v;
    }
    if (x->type == GgufType::kArray) {
      SLMC_CHECK(x->ints.size() == static_cast<size_t>(n_layer), o, ": GGUF '", key(name), "' has ",
                 x->count(), " entries for ", n_layer, " layers");
      return x->ints;
    }
    std::fill(v.begin(), v.end(), f.get_int(key(name)));
    return v;
  };
  const std::vector<int64_t> n_head = per_layer("attention.head_count", true, 0);
  const std::vector<int64_t> n_kv = per_layer("attention.head_count_kv", false, -1);
  const std::vector<int64_t> ffn = per_layer("feed_forward_length", true, 0);
  SLMC_CHECK(n_head[0] > 0, o, ": GGUF '", key("attention.head_count"), "' is ", n_head[0]);
  int64_t head_dim = s.d_model / n_head[0];
  if (f.find_kv(key("attention.key_length"))) head_dim = f.get_int(key("attention.key_length"));
  if (f.find_kv(key("attention.value_length")))
    SLMC_CHECK(f.get_int(key("attention.value_length")) == head_dim, o, ": GGUF key and value head sizes differ");
  if (f.find_kv(key("rope.dimension_count")))
    SLMC_CHECK(f.get_int(key("rope.dimension_count")) == head_dim, o, ": GGUF '",
               key("rope.dimension_count"), "' ", f.get_int(key("rope.dimension_count")),
               " != head size ", head_dim, " (partial RoPE is not supported)");
  const double theta = f.find_kv(key("rope.freq_base")) ? f.get_float(key("rope.freq_base")) : 10000.0;
  int64_t n_expert = f.find_kv(key("expert_count")) ? f.get_int(key("expert_count")) : 0;
  const int64_t n_used = n_expert ? f.get_int(key("expert_used_count")) : 0;
  if (n_expert > 0) s.family = Family::kMixtral;
  if (const GgufValue* t = f.find_kv(key("rope.scaling.type"))) {
    SLMC_CHECK(t->type == GgufType::kString, o, ": GGUF '", key("rope.scaling.type"), "' is not a string");
    if (t->s == "linear") {
      s.rope_scaling.type = "linear";
      s.rope_scaling.factor = f.get_float(key("rope.scaling.factor"));
    } else {
      SLMC_CHECK(t->s == "none", o, ": GGUF RoPE scaling '", t->s, "' is not supported (none, linear)");
    }
  }
  if (f.find("rope_freqs.weight") != nullptr) {
    const GgufValue* l3 = f.find_kv(kKeyLlama3);
    SLMC_CHECK(l3 != nullptr && l3->floats.size() == 4, o,
               ": GGUF has rope_freqs.weight (llama3 RoPE factors) but not the parameters slmc "
               "needs ('", kKeyLlama3, "'): not supported");
    s.rope_scaling.type = "llama3";
    s.rope_scaling.factor = l3->floats[0];
    s.rope_scaling.low_freq_factor = l3->floats[1];
    s.rope_scaling.high_freq_factor = l3->floats[2];
    s.rope_scaling.original_max_position = static_cast<int64_t>(l3->floats[3]);
  }
  auto has = [&](const std::string& n) { return f.find(n) != nullptr; };
  std::vector<bool> swa(static_cast<size_t>(n_layer), false);
  int64_t window = 0;
  double local_theta = 10000.0;
  if (arch == "gemma3") {
    s.act = Activation::kGeluTanh;
    s.embed_scale = std::sqrt(static_cast<double>(s.d_model));
    if (f.find_kv(key("attention.sliding_window"))) window = f.get_int(key("attention.sliding_window"));
    if (window > 0) {
      const GgufValue* p = f.find_kv(key("attention.sliding_window_pattern"));
      if (p != nullptr && p->type == GgufType::kArray) {
        SLMC_CHECK(p->ints.size() == static_cast<size_t>(n_layer), o, ": GGUF sliding window pattern has ",
                   p->count(), " entries for ", n_layer, " layers");
        for (int64_t i = 0; i < n_layer; ++i) swa[static_cast<size_t>(i)] = p->ints[static_cast<size_t>(i)] != 0;
      } else {
        const int64_t pat = p ? f.get_int(key("attention.sliding_window_pattern")) : 6;
        for (int64_t i = 0; i < n_layer; ++i)
          swa[static_cast<size_t>(i)] = pat == 0 || (i % pat < pat - 1);
      }
      if (f.find_kv(key("rope.freq_base_swa"))) local_theta = f.get_float(key("rope.freq_base_swa"));
    }
  }
  for (int64_t i = 0; i < n_layer; ++i) {
    const size_t u = static_cast<size_t>(i);
    LayerSpec l;
    l.n_head = n_head[u];
    l.n_kv_head = n_kv[u] < 0 ? n_head[u] : n_kv[u];
    l.head_dim = head_dim;
    l.ffn_dim = ffn[u];
    l.rope_theta = theta;
    l.n_expert = n_expert;
    l.n_expert_used = n_used;
    l.attn_qkv_bias = has(names::blk(i, names::kAttnQBias));
    l.attn_out_bias = has(names::blk(i, names::kAttnOutBias));
    l.mlp_bias = has(names::blk(i, names::kFfnDownBias));
    l.qk_norm = has(names::blk(i, names::kAttnQNorm));
    l.post_norms = has(names::blk(i, names::kAttnPostNorm));
    if (arch == "gemma3") {
      l.attn_scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
      if (swa[u]) {
        l.window = window;
        l.rope_theta = local_theta;
        l.rope_scaled = false;
      }
    }
    s.layers.push_back(l);
  }
  if (arch == "gemma3") {
    s.bos_id = 2;
    s.eos_id = 1;
  }
  if (f.find_kv("tokenizer.ggml.bos_token_id")) s.bos_id = f.get_int("tokenizer.ggml.bos_token_id");
  if (f.find_kv("tokenizer.ggml.eos_token_id")) s.eos_id = f.get_int("tokenizer.ggml.eos_token_id");
  try {
    s.validate();
  } catch (const Error& e) {
    fail(o, ": ", e.what());
  }
  return s;
}

// ---- SentencePiece-style vocabularies ("llama") -------------------------------------------------

namespace {

// A "llama" vocabulary as slmc's SentencePiece BPE model (what load_sentencepiece reads, built
// as a ModelProto): llama.cpp's SPM tokenizer merges the same way (best-scoring piece first).
// `ids`: unk, bos, eos, pad.
std::unique_ptr<Tokenizer> spm_tokenizer(const std::vector<std::string>& pieces,
                                         const std::vector<double>& scores,
                                         const std::vector<int64_t>& types,
                                         const std::array<int64_t, 4>& ids, bool add_space_prefix,
                                         const std::string& o) {
  std::string pb;
  bool byte_fallback = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string piece;
    const int64_t t = types[i];
    SLMC_CHECK(t >= 1 && t <= 6, o, ": GGUF token ", i, " has type ", t, " (1..6 allowed)");
    byte_fallback |= t == kTokByte;
    pb_bytes(piece, 1, pieces[i]);
    pb_float(piece, 2, static_cast<float>(scores[i]));
    pb_int(piece, 3, t);
    pb_bytes(pb, 1, piece);
  }
  std::string trainer;
  pb_int(trainer, 3, 2);  // model_type BPE
  if (byte_fallback) pb_int(trainer, 35, 1);
  for (int k = 0; k < 4; ++k) pb_int(trainer, 40 + k, ids[static_cast<size_t>(k)]);
  // The pieces' names too (unk_piece .. pad_piece): SentencePiece finds BOS and EOS by name.
  for (int k = 0; k < 4; ++k) {
    const int64_t id = ids[static_cast<size_t>(k)];
    if (id >= 0 && static_cast<size_t>(id) < pieces.size())
      pb_bytes(trainer, 45 + k, pieces[static_cast<size_t>(id)]);
  }
  pb_bytes(pb, 2, trainer);
  std::string norm;
  pb_bytes(norm, 1, "identity");
  pb_int(norm, 3, add_space_prefix ? 1 : 0);  // add_dummy_prefix
  pb_int(norm, 4, 0);                         // llama.cpp keeps repeated spaces
  pb_int(norm, 5, 1);
  pb_bytes(pb, 3, norm);
  return load_tokenizer_from_bytes("sentencepiece", pb, o);
}

}  // namespace

// ---- byte-level BPE vocabularies ("gpt2") ----------------------------------------------------

namespace {

// llama.cpp's byte-level BPE pre-tokenizers (tokenizer.ggml.pre; src/llama-vocab.cpp implements
// each with its own regexes and flags) by the tokenizer.json pipeline they stand for: the Split
// regexes as tokenizer.json spells them (Oniguruma), the normalizer and the model's
// ignore_merges. One table, both ways: export picks the row whose patterns the file has,
// import rebuilds that row's pipeline. convert_hf_to_gguf.py names the same rows by hashing the
// ids of a probe text (get_vocab_base_pre): "llama-bpe" for Meta-Llama-3, "qwen2" for Qwen1.5
// to Qwen3, "gpt-2" for openai-community/gpt2.
struct BpePre {
  const char* name;        // tokenizer.ggml.pre
  const char* family;      // for messages
  const char* pattern;     // the one Split regex (or ByteLevel's own regex when use_regex)
  bool byte_level_regex;   // GPT-2: ByteLevel(use_regex: true) splits, no Split step
  const char* normalizer;  // tokenizer.json normalizer type, nullptr for none
  bool ignore_merges;
};
const BpePre kBpePres[] = {
    {"llama-bpe", "Llama 3",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     false, nullptr, true},
    {"qwen2", "Qwen2/Qwen3",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     false, "NFC", false},
    {"gpt-2", "GPT-2",
     "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", true,
     nullptr, false},
};

std::string known_bpe_pres() {
  std::string s;
  for (const BpePre& p : kBpePres) s += str_cat(s.empty() ? "" : ", ", p.name, " (", p.family, ")");
  return s;
}

// convert_hf_to_gguf.py's does_token_look_special: added tokens it types CONTROL even when
// tokenizer.json does not call them special.
bool looks_special(const std::string& t) {
  auto wrapped = [&](const std::string& a, const std::string& b) {
    return t.size() >= a.size() + b.size() && t.compare(0, a.size(), a) == 0 &&
           t.compare(t.size() - b.size(), b.size(), b) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") || wrapped("<unused", ">");
}

// The special token ids of a tokenizer.json vocabulary (bos, eos, eot, unk, pad; those >= 0 are
// written) and whether llama.cpp adds BOS / EOS.
void add_special_kv(GgufWriter& w, const std::array<int64_t, 5>& ids, bool add_bos, bool add_eos) {
  const char* const keys[] = {"bos_token_id", "eos_token_id", "eot_token_id", "unknown_token_id",
                              "padding_token_id"};
  for (size_t k = 0; k < ids.size(); ++k)
    if (ids[k] >= 0)
      w.add_kv(str_cat("tokenizer.ggml.", keys[k]), GgufValue::u32(static_cast<uint32_t>(ids[k])));
  w.add_kv("tokenizer.ggml.add_bos_token", GgufValue::boolean(add_bos));
  w.add_kv("tokenizer.ggml.add_eos_token", GgufValue::boolean(add_eos));
}

// A "gpt2" vocabulary as GGUF holds it.
struct BpeVocab {
  const BpePre* pre = nullptr;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  std::vector<std::string> merges;  // "a b"
  int64_t bos = -1, eos = -1, eot = -1, pad = -1;
  bool add_bos = false, add_eos = false;
};

// The Hugging Face tokenizer a "gpt2" vocabulary stands for: tokenizer.json rebuilt with the
// pre-tokenizer row's pipeline, NORMAL tokens in model.vocab, CONTROL and USER_DEFINED ones as
// added tokens (matched in the text before the model, as llama.cpp and Hugging Face both do),
// UNUSED ids left as holes. Checks what it reads; `o` names the file in errors.
std::unique_ptr<Tokenizer> bpe_tokenizer(const BpeVocab& v, const std::string& o) {
  using nlohmann::json;
  const size_t n = v.tokens.size();
  SLMC_CHECK(v.types.size() == n, o, ": tokenizer.ggml.token_type has ", v.types.size(),
             " entries for ", n, " tokens");
  json vocab = json::object();
  json added = json::array();
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = v.tokens[i];
    const int64_t type = v.types[i];
    if (type == kTokUnused) continue;
    SLMC_CHECK(type == kTokNormal || type == kTokControl || type == kTokUserDefined, o,
               ": GGUF gpt2 token ", i, " has type ", type,
               " (normal 1, control 3, user-defined 4 or unused 5 allowed)");
    SLMC_CHECK(!t.empty() && seen.insert(t).second, o, ": GGUF gpt2 token ", i, " ",
               quoted_excerpt(t), t.empty() ? " is empty" : " appears twice");
    if (type == kTokNormal) {
      vocab[t] = i;
    } else {
      added.push_back({{"id", i},
                       {"content", t},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == kTokControl}});
    }
  }
  json merges = json::array();
  for (size_t i = 0; i < v.merges.size(); ++i) {
    const std::string& m = v.merges[i];
    const size_t sp = m.find(' ');
    SLMC_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < m.size() &&
                   m.find(' ', sp + 1) == std::string::npos,
               o, ": tokenizer.ggml.merges[", i, "] ", quoted_excerpt(m), " is not \"a b\"");
    merges.push_back(m);
  }
  const BpePre& p = *v.pre;
  const json byte_level = {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", false},
                           {"use_regex", p.byte_level_regex}};
  json pre = byte_level;
  if (!p.byte_level_regex) {
    json split = {{"type", "Split"},
                  {"pattern", {{"Regex", p.pattern}}},
                  {"behavior", "Isolated"},
                  {"invert", false}};
    pre = {{"type", "Sequence"}, {"pretokenizers", json::array({split, byte_level})}};
  }
  json tj = {{"version", "1.0"},
             {"added_tokens", std::move(added)},
             {"normalizer", p.normalizer ? json{{"type", p.normalizer}} : json(nullptr)},
             {"pre_tokenizer", std::move(pre)},
             {"post_processor", nullptr},
             {"decoder", byte_level},
             {"model",
              {{"type", "BPE"},
               {"dropout", nullptr},
               {"unk_token", nullptr},
               {"continuing_subword_prefix", nullptr},
               {"end_of_word_suffix", nullptr},
               {"fuse_unk", false},
               {"byte_fallback", false},
               {"ignore_merges", p.ignore_merges},
               {"vocab", std::move(vocab)},
               {"merges", std::move(merges)}}}};
  HfTokenizerConfig cfg;
  auto token_of = [&](int64_t id, const char* key) -> std::optional<std::string> {
    if (id < 0) return std::nullopt;
    SLMC_CHECK(static_cast<size_t>(id) < n && v.types[static_cast<size_t>(id)] != kTokUnused, o,
               ": tokenizer.ggml.", key, " ", id, " is not a token of the vocabulary of ", n);
    return v.tokens[static_cast<size_t>(id)];
  };
  cfg.bos_token = token_of(v.bos, "bos_token_id");
  cfg.eos_token = token_of(v.eos, "eos_token_id");
  cfg.pad_token = token_of(v.pad, "padding_token_id");
  token_of(v.eot, "eot_token_id");
  cfg.add_bos_token = v.add_bos;
  cfg.add_eos_token = v.add_eos;
  for (const int64_t id : {v.eos, v.eot})
    if (id >= 0) cfg.eos_token_ids.push_back(id);
  return load_tokenizer_from_bytes("hf", make_hf_tokenizer_blob(tj.dump(), cfg), o);
}

// The row of kBpePres whose pipeline `info` has; throws naming the file otherwise.
const BpePre& bpe_pre_for(const HfVocabInfo& info, const std::string& src) {
  const std::vector<std::string>& pats = info.split_patterns;
  for (const BpePre& p : kBpePres)
    if (pats.size() == 1 && pats[0] == p.pattern) return p;
  fail("gguf export: ", src, ": the pre-tokenizer ",
       pats.empty() ? std::string("splits nowhere (no Split regex)")
                    : str_cat("regex ", quoted_excerpt(pats[0], 120),
                              pats.size() > 1 ? str_cat(" (and ", pats.size() - 1, " more)") : ""),
       " is not one llama.cpp implements as a tokenizer.ggml.pre (known: ", known_bpe_pres(),
       "); llama.cpp would split text differently");
}

// Texts the exported vocabulary must encode exactly as the tokenizer.json does:
// convert_hf_to_gguf.py's probe (get_vocab_base_pre's chktxt) and a few more.
const char* const kBpeProbes[] = {
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\xf0\x9f\x9a\x80 (normal) "
    "\xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f (multiple emojis concatenated) "
    "\xe2\x9c\x85 \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99 3 33 333 3333 33333 333333 3333333 33333333 3.3 "
    "3..3 3...3 \xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b\xe1\x9e\x8f\xe1\x9f\x82"
    "\xe1\x9e\x96\xe1\x9e\xb7\xe1\x9e\x9f\xe1\x9f\x81\xe1\x9e\x9f\xe1\x9e\xa2\xe1\x9e\xb6"
    "\xe1\x9e\x85\xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8"
    "apple\xe5\xb7\xa5\xe4\xbd"
    "\x9c"
    "1314151\xe5\xa4\xa9\xef\xbd\x9e ------======= \xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd"
    "\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8 "
    "''''''```````"
    "\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make "
    "it, "
    "'D you like some tea? We'Ve a'lL",
    " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor .",
    "caf\x65\xcc\x81 \xe2\x84\xab 1234567890 x\r\ny\t\tz   ",
};

BpeVocab bpe_vocab_of(const HfTokenizer& hf, int64_t vocab) {
  const HfVocabInfo info = hf.vocab_info();
  BpeVocab v;
  v.pre = &bpe_pre_for(info, hf.source());
  const auto n = static_cast<int64_t>(info.tokens.size());
  for (int64_t i = 0; i < vocab; ++i) {
    if (i >= n || info.types[static_cast<size_t>(i)] == HfVocabInfo::kUnused) {
      v.tokens.push_back(str_cat("[PAD", i, "]"));  // convert_hf_to_gguf.py's holes and padding
      v.types.push_back(kTokUnused);
      continue;
    }
    const std::string& t = info.tokens[static_cast<size_t>(i)];
    int64_t type = kTokNormal;
    switch (info.types[static_cast<size_t>(i)]) {
      case HfVocabInfo::kControl:
        type = kTokControl;
        break;
      case HfVocabInfo::kUserDefined:
        type = looks_special(t) ? kTokControl : kTokUserDefined;
        break;
      case HfVocabInfo::kNormal:
        type = kTokNormal;
        break;
      default:
        fail("gguf export: ", hf.source(), ": token ", i, " ", quoted_excerpt(t), " has type ",
             static_cast<int>(info.types[static_cast<size_t>(i)]),
             ", which a byte-level BPE vocabulary cannot hold");
    }
    v.tokens.push_back(t);
    v.types.push_back(type);
  }
  v.merges.reserve(info.merges.size());
  for (const auto& [a, b] : info.merges) v.merges.push_back(a + " " + b);
  v.bos = info.bos_id;
  v.eos = info.eos_id;
  v.pad = info.pad_id;
  for (const int32_t id : info.eos_ids)
    if (id != info.eos_id) {
      v.eot = id;
      break;
    }
  // slmc evaluates every window from BOS (as llama-perplexity does when add_bos_token is set).
  v.add_bos = info.bos_id >= 0;
  v.add_eos = info.add_eos;
  return v;
}

}  // namespace

// ---- tokenizer ---------------------------------------------------------------------------------

namespace {

// A SentencePiece-style tokenizer.json (BPE over "\u2581" pieces with byte fallback: Llama 2,
// Mistral, TinyStories, Gemma 3) as tokenizer.ggml.model "llama", the way convert_hf_to_gguf.py
// writes these families from their tokenizer.model: pieces, scores, types (BYTE for <0xXX>,
// CONTROL/USER_DEFINED for added tokens), add_space_prefix. A tokenizer.json has no scores, so
// each piece scores minus the rank of the first merge that makes it: llama.cpp's SPM tokenizer,
// which merges the best-scoring piece first, then merges in merge-rank order. The result is
// checked (add_space_prefix chosen) against the tokenizer.json on probe texts and every
// non-control added token; control tokens are left out of the probes because SentencePiece
// never matches them in text (llama.cpp does with parse_special, Hugging Face always does).
void add_hf_spm_tokenizer_kv(const HfTokenizer& hf, const HfVocabInfo& info, int64_t vocab,
                             GgufWriter& w) {
  const std::string& src = hf.source();
  const auto n = static_cast<int64_t>(info.tokens.size());
  std::unordered_map<std::string, size_t> first_rank;
  for (size_t r = info.merges.size(); r-- > 0;)
    first_rank[info.merges[r].first + info.merges[r].second] = r;
  const double worst = -static_cast<double>(info.merges.size()) - 1;
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int64_t> types;
  for (int64_t i = 0; i < vocab; ++i) {
    const size_t u = static_cast<size_t>(i);
    if (i >= n || info.types[u] == HfVocabInfo::kUnused) {
      tokens.push_back(str_cat("[PAD", i, "]"));
      scores.push_back(-1000.0);
      types.push_back(kTokUnused);
      continue;
    }
    const std::string& t = info.tokens[u];
    int64_t type = static_cast<int64_t>(info.types[u]);  // the same numbering as llama.cpp's
    if (info.types[u] == HfVocabInfo::kUserDefined && looks_special(t)) type = kTokControl;
    if (i == info.unk_id) type = kTokUnknown;  // an added <unk> is still SentencePiece's UNKNOWN
    const auto r = first_rank.find(t);
    tokens.push_back(t);
    scores.push_back(type != kTokNormal      ? 0.0
                     : r != first_rank.end() ? -static_cast<double>(r->second)
                                             : worst);
    types.push_back(type);
  }
  std::vector<std::string> probes(std::begin(kBpeProbes), std::end(kBpeProbes));
  for (size_t i = 0; i < info.types.size(); ++i)
    if (info.types[i] == HfVocabInfo::kUserDefined && !looks_special(info.tokens[i]) &&
        info.tokens[i].find(kSpmSpace) == std::string::npos)  // "\u2581" is typed as a space
      probes.push_back("x" + info.tokens[i] + " a");
  const std::array<int64_t, 4> ids = {info.unk_id, info.bos_id, info.eos_id, info.pad_id};
  int prefix = -1;
  std::string why;
  for (const int space : {1, 0}) {
    const std::unique_ptr<Tokenizer> back =
        spm_tokenizer(tokens, scores, types, ids, space == 1, src + " (as GGUF)");
    why.clear();
    for (const std::string& p : probes)
      if (why.empty() && back->encode(p) != hf.encode(p)) why = p;
    if (why.empty()) {
      prefix = space;
      break;
    }
  }
  SLMC_CHECK(prefix >= 0, "gguf export: ", src,
             ": its pipeline is not what llama.cpp's SentencePiece (llama) tokenizer does with "
             "these pieces and merge ranks: the text ",
             quoted_excerpt(why, 40), " would get other ids");
  w.add_kv("tokenizer.ggml.model", GgufValue::str("llama"));
  w.add_kv("tokenizer.ggml.pre", GgufValue::str("default"));
  w.add_kv("tokenizer.ggml.tokens", GgufValue::str_array(std::move(tokens)));
  w.add_kv("tokenizer.ggml.scores", GgufValue::float_array(std::move(scores)));
  w.add_kv("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::kInt32, std::move(types)));
  add_special_kv(w, {info.bos_id, info.eos_id, -1, info.unk_id, info.pad_id}, info.bos_id >= 0,
                 info.add_eos);
  w.add_kv("tokenizer.ggml.add_space_prefix", GgufValue::boolean(prefix == 1));
}

// A tokenizer.json tokenizer as convert_hf_to_gguf.py's _set_vocab_gpt2 writes it, after
// checking that the vocabulary llama.cpp (and slmc's importer) will rebuild encodes the probe
// texts and every added token exactly as the tokenizer.json does.
void add_hf_tokenizer_kv(const HfTokenizer& hf, int64_t vocab, GgufWriter& w) {
  const HfVocabInfo info = hf.vocab_info();
  if (!info.byte_level) return add_hf_spm_tokenizer_kv(hf, info, vocab, w);
  BpeVocab v = bpe_vocab_of(hf, vocab);
  const std::unique_ptr<Tokenizer> back = bpe_tokenizer(v, hf.source() + " (as GGUF)");
  std::vector<std::string> probes(std::begin(kBpeProbes), std::end(kBpeProbes));
  std::string all_added = "x";
  for (size_t i = 0; i < info.types.size(); ++i)
    if (info.types[i] == HfVocabInfo::kControl || info.types[i] == HfVocabInfo::kUserDefined)
      all_added += info.tokens[i] + " a";
  probes.push_back(all_added);
  for (const std::string& p : probes)
    SLMC_CHECK(back->encode(p) == hf.encode(p), "gguf export: ", hf.source(),
               ": its pipeline is not what llama.cpp's '", v.pre->name,
               "' pre-tokenizer does (a normalizer, prefix space or merge rule differs): the text ",
               quoted_excerpt(p, 40), " would get other ids");
  w.add_kv("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.add_kv("tokenizer.ggml.pre", GgufValue::str(v.pre->name));
  w.add_kv("tokenizer.ggml.tokens", GgufValue::str_array(std::move(v.tokens)));
  w.add_kv("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::kInt32, std::move(v.types)));
  w.add_kv("tokenizer.ggml.merges", GgufValue::str_array(std::move(v.merges)));
  add_special_kv(w, {v.bos, v.eos, v.eot, -1, v.pad}, v.add_bos, v.add_eos);
}

}  // namespace

void add_gguf_tokenizer_kv(const Tokenizer& tok, int64_t vocab, GgufWriter& w) {
  const int64_t n = tok.vocab_size();
  SLMC_CHECK(n <= vocab, "gguf export: tokenizer ", tok.source(), " has ", n,
             " tokens, more than the model's vocab ", vocab);
  if (tok.kind() == "hf")
    return add_hf_tokenizer_kv(dynamic_cast<const HfTokenizer&>(tok), vocab, w);
  std::vector<std::string> tokens;
  std::vector<double> scores;
  std::vector<int64_t> types;
  const std::string kind = tok.kind();
  if (kind == "byte") {
    // GPT-2 byte alphabet, no merges: llama.cpp's BPE gives one token per byte, as slmc does.
    for (int32_t i = 0; i < n; ++i) {
      tokens.push_back(tok.piece(i));
      types.push_back(i == tok.bos_id() || i == tok.eos_id() ? kTokControl : kTokNormal);
    }
  } else if (kind == "sentencepiece") {
    const auto& spm = dynamic_cast<const SentencePieceTokenizer&>(tok);
    for (int32_t i = 0; i < n; ++i) {
      tokens.push_back(spm.piece(i));
      scores.push_back(spm.score(i));
      types.push_back(static_cast<int64_t>(spm.type(i)));  // same numbering as llama.cpp's
    }
  } else if (kind == "llama2c") {
    // tokenizer.bin keeps SentencePiece's pieces with "▁" turned into " " and BOS/EOS as
    // "\n<s>\n" / "\n</s>\n" (llama2.c tokenizer.py): undo both.
    const auto& l2 = dynamic_cast<const Llama2cTokenizer&>(tok);
    for (int32_t i = 0; i < n; ++i) {
      std::string p = l2.piece(i);
      int64_t type = kTokNormal;
      if (i == Llama2cTokenizer::kUnk) {
        type = kTokUnknown;
      } else if (i == Llama2cTokenizer::kBos || i == Llama2cTokenizer::kEos) {
        type = kTokControl;
        p = i == Llama2cTokenizer::kBos ? "<s>" : "</s>";
      } else if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>') {
        type = kTokByte;
      } else {
        std::string q;
        for (char c : p) q += c == ' ' ? std::string(kSpmSpace) : std::string(1, c);
        p = q;
      }
      tokens.push_back(p);
      scores.push_back(l2.score(i));
      types.push_back(type);
    }
  } else {
    fail("gguf export: tokenizer kind '", kind, "' has no GGUF form yet");
  }
  for (int64_t i = n; i < vocab; ++i) {  // padding rows of the embedding
    tokens.push_back(str_cat("[PAD", i, "]"));
    if (!scores.empty()) scores.push_back(-1000.0);
    types.push_back(kTokUnused);
  }
  if (kind == "byte") {
    w.add_kv("tokenizer.ggml.model", GgufValue::str("gpt2"));
    w.add_kv("tokenizer.ggml.pre", GgufValue::str("default"));
  } else {
    w.add_kv("tokenizer.ggml.model", GgufValue::str("llama"));
  }
  w.add_kv("tokenizer.ggml.tokens", GgufValue::str_array(std::move(tokens)));
  if (!scores.empty()) w.add_kv("tokenizer.ggml.scores", GgufValue::float_array(std::move(scores)));
  w.add_kv("tokenizer.ggml.token_type", GgufValue::int_array(GgufType::kInt32, std::move(types)));
  if (kind == "byte") w.add_kv("tokenizer.ggml.merges", GgufValue::str_array({}));
  w.add_kv("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(tok.bos_id())));
  w.add_kv("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(tok.eos_id())));
  if (kind == "sentencepiece") {
    const auto& spm = dynamic_cast<const SentencePieceTokenizer&>(tok);
    if (spm.unk_id() >= 0)
      w.add_kv("tokenizer.ggml.unknown_token_id", GgufValue::u32(static_cast<uint32_t>(spm.unk_id())));
  } else if (kind == "llama2c") {
    w.add_kv("tokenizer.ggml.unknown_token_id", GgufValue::u32(Llama2cTokenizer::kUnk));
  }
  // slmc evaluates every window from BOS; llama.cpp adds it when asked to.
  w.add_kv("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  w.add_kv("tokenizer.ggml.add_eos_token", GgufValue::boolean(false));
  if (kind != "byte") w.add_kv("tokenizer.ggml.add_space_prefix", GgufValue::boolean(true));
}

std::unique_ptr<Tokenizer> gguf_tokenizer(const GgufFile& f) {
  const GgufValue* model = f.find_kv("tokenizer.ggml.model");
  if (model == nullptr) return nullptr;
  const std::string& o = f.path();
  const std::string m = f.get_str("tokenizer.ggml.model");
  const GgufValue* toks = f.find_kv("tokenizer.ggml.tokens");
  SLMC_CHECK(toks != nullptr && toks->type == GgufType::kArray && toks->elem == GgufType::kString,
             o, ": GGUF tokenizer has no string array tokenizer.ggml.tokens");
  const std::vector<std::string>& pieces = toks->strs;
  const GgufValue* types = f.find_kv("tokenizer.ggml.token_type");
  auto type_of = [&](size_t i) -> int64_t {
    return types && types->ints.size() == pieces.size() ? types->ints[i] : kTokNormal;
  };
  if (m == "gpt2") {
    // slmc's byte tokenizer: 256 byte pieces of GPT-2's alphabet, BOS, EOS, no merges.
    const std::unique_ptr<Tokenizer> byte = make_byte_tokenizer();
    const GgufValue* merges = f.find_kv("tokenizer.ggml.merges");
    bool is_byte = pieces.size() >= static_cast<size_t>(byte->vocab_size()) &&
                   (merges == nullptr || merges->count() == 0);
    for (int32_t i = 0; is_byte && i < byte->vocab_size(); ++i) is_byte = pieces[static_cast<size_t>(i)] == byte->piece(i);
    for (size_t i = static_cast<size_t>(byte->vocab_size()); is_byte && i < pieces.size(); ++i)
      is_byte = type_of(i) == kTokUnused;
    if (is_byte) return load_tokenizer_from_bytes("byte", "", o);
    const GgufValue* pre = f.find_kv("tokenizer.ggml.pre");
    const std::string pre_name = pre ? f.get_str("tokenizer.ggml.pre") : "";
    BpeVocab v;
    for (const BpePre& p : kBpePres)
      if (pre_name == p.name) v.pre = &p;
    SLMC_CHECK(v.pre != nullptr, o, ": GGUF BPE (gpt2) tokenizer.ggml.pre ",
               quoted_excerpt(pre_name.empty() ? "(absent)" : pre_name),
               " is not a pre-tokenizer slmc can encode with (", known_bpe_pres(), ")");
    SLMC_CHECK(
        merges != nullptr && merges->type == GgufType::kArray && merges->elem == GgufType::kString,
        o, ": GGUF BPE (gpt2) tokenizer has no string array tokenizer.ggml.merges");
    SLMC_CHECK(
        types != nullptr && types->type == GgufType::kArray && types->ints.size() == pieces.size(),
        o, ": GGUF BPE (gpt2) tokenizer.ggml.token_type needs one integer per token (",
        pieces.size(), ")");
    v.tokens = pieces;
    v.types = types->ints;
    v.merges = merges->strs;
    auto id_or = [&](const char* key) { return f.find_kv(key) ? f.get_int(key) : int64_t{-1}; };
    v.bos = id_or("tokenizer.ggml.bos_token_id");
    v.eos = id_or("tokenizer.ggml.eos_token_id");
    v.eot = id_or("tokenizer.ggml.eot_token_id");
    v.pad = id_or("tokenizer.ggml.padding_token_id");
    auto flag = [&](const char* key) {
      const GgufValue* b = f.find_kv(key);
      SLMC_CHECK(b == nullptr || b->type == GgufType::kBool, o, ": ", key, " is not a boolean");
      return b != nullptr && b->i != 0;
    };
    v.add_bos = flag("tokenizer.ggml.add_bos_token");
    v.add_eos = flag("tokenizer.ggml.add_eos_token");
    return bpe_tokenizer(v, o);
  }
  SLMC_CHECK(m == "llama", o, ": GGUF tokenizer model '", m, "' is not supported (llama, gpt2)");
  const GgufValue* scores = f.find_kv("tokenizer.ggml.scores");
  SLMC_CHECK(scores != nullptr && scores->floats.size() == pieces.size(), o,
             ": GGUF llama tokenizer needs tokenizer.ggml.scores with one score per token");
  auto id_or = [&](const char* key, int64_t d) {
    return f.find_kv(key) ? f.get_int(key) : d;
  };
  std::vector<int64_t> ty(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) ty[i] = type_of(i);
  const GgufValue* sp = f.find_kv("tokenizer.ggml.add_space_prefix");
  return spm_tokenizer(
      pieces, scores->floats, ty,
      {id_or("tokenizer.ggml.unknown_token_id", 0), id_or("tokenizer.ggml.bos_token_id", 1),
       id_or("tokenizer.ggml.eos_token_id", 2), id_or("tokenizer.ggml.padding_token_id", -1)},
      sp == nullptr || sp->i != 0, o);
}

}  // namespace slmc::format
