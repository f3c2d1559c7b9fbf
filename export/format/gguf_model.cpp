#include "export/format/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/tokenizer/llama2c_tokenizer.h"
#include "compress/tokenizer/sentencepiece.h"

namespace slmc::format {

namespace {

// llama.cpp's token types (llama_token_type / gguf-py TokenType).
constexpr int64_t kTokNormal = 1, kTokUnknown = 2, kTokControl = 3, kTokUnused = 5, kTokByte = 6;

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

// ---- tokenizer ---------------------------------------------------------------------------------

void add_gguf_tokenizer_kv(const Tokenizer& tok, int64_t vocab, GgufWriter& w) {
  const int64_t n = tok.vocab_size();
  SLMC_CHECK(n <= vocab, "gguf export: tokenizer ", tok.source(), " has ", n,
             " tokens, more than the model's vocab ", vocab);
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
    SLMC_CHECK(is_byte, o, ": GGUF BPE (gpt2) vocabulary of ", pieces.size(),
               " tokens is not slmc's byte tokenizer; other BPE vocabularies are not supported yet");
    return load_tokenizer_from_bytes("byte", "", o);
  }
  SLMC_CHECK(m == "llama", o, ": GGUF tokenizer model '", m, "' is not supported (llama, gpt2)");
  const GgufValue* scores = f.find_kv("tokenizer.ggml.scores");
  SLMC_CHECK(scores != nullptr && scores->floats.size() == pieces.size(), o,
             ": GGUF llama tokenizer needs tokenizer.ggml.scores with one score per token");
  // A SentencePiece BPE ModelProto with these pieces: what load_sentencepiece reads.
  std::string pb;
  bool byte_fallback = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string piece;
    int64_t t = type_of(i);
    SLMC_CHECK(t >= 1 && t <= 6, o, ": GGUF token ", i, " has type ", t, " (1..6 allowed)");
    byte_fallback |= t == kTokByte;
    pb_bytes(piece, 1, pieces[i]);
    pb_float(piece, 2, static_cast<float>(scores->floats[i]));
    pb_int(piece, 3, t);
    pb_bytes(pb, 1, piece);
  }
  auto id_or = [&](const char* key, int64_t d) {
    return f.find_kv(key) ? f.get_int(key) : d;
  };
  std::string trainer;
  pb_int(trainer, 3, 2);  // model_type BPE
  if (byte_fallback) pb_int(trainer, 35, 1);
  pb_int(trainer, 40, id_or("tokenizer.ggml.unknown_token_id", 0));
  pb_int(trainer, 41, id_or("tokenizer.ggml.bos_token_id", 1));
  pb_int(trainer, 42, id_or("tokenizer.ggml.eos_token_id", 2));
  pb_int(trainer, 43, id_or("tokenizer.ggml.padding_token_id", -1));
  pb_bytes(pb, 2, trainer);
  std::string norm;
  pb_bytes(norm, 1, "identity");
  const GgufValue* sp = f.find_kv("tokenizer.ggml.add_space_prefix");
  pb_int(norm, 3, sp == nullptr || sp->i != 0 ? 1 : 0);  // add_dummy_prefix
  pb_int(norm, 4, 0);                                      // llama.cpp keeps repeated spaces
  pb_int(norm, 5, 1);
  pb_bytes(pb, 3, norm);
  return load_tokenizer_from_bytes("sentencepiece", pb, o);
}

}  // namespace slmc::format
