// Writes the seed corpus of every harness: small valid files of each format made by slmc's own
// writers (so the fuzzer starts from inputs that get deep into each parser), plus the real
// stories260K tokenizers from ../shared/data when present. Nothing binary is committed.
//
//   slmc_fuzz_seeds OUT_DIR [SHARED_DATA_DIR]   -> OUT_DIR/<harness>/<seed files>
#include <hdf5.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/io/h5.h"
#include "compress/io/model_loader.h"
#include "compress/io/safetensors.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/slm_format.h"
#include "quantize/codec/formats.h"
#include "tests/tokenizer/model_proto_writer.h"

namespace {

namespace fs = std::filesystem;
using namespace slmc;

fs::path g_out;

void put(const std::string& harness, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_out / harness);
  std::ofstream f(g_out / harness / name, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f.good()) fail(harness, "/", name, ": cannot write seed");
}

std::string slurp(const fs::path& p) { return read_file(p.string()); }

// Deterministic small weights.
TensorMap weights(const ModelSpec& s, float scale = 0.1f) {
  TensorMap t;
  uint32_t state = 12345;
  for (const TensorDecl& d : expected_tensors(s)) {
    HostTensor h;
    h.shape = d.shape;
    h.data.resize(static_cast<size_t>(shape_numel(d.shape)));
    for (float& v : h.data) {
      state = state * 1664525u + 1013904223u;
      v = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * scale;
    }
    t[d.name] = h;
  }
  return t;
}

ModelSpec tiny(Family f, int64_t n_layer = 1) {
  ModelSpec s = make_uniform_spec(f, 16, 8, n_layer, 2, 1, 8, 32);
  s.bos_id = 1;
  s.eos_id = 2;
  if (f == Family::kQwen2)
    for (LayerSpec& l : s.layers) l.attn_qkv_bias = true;
  return s;
}

// ---- safetensors, HF directories, sharded indexes, config.json -------------------------------

void hf_seeds(const fs::path& tmp) {
  // config.json of every family slmc writes, with and without per-layer widths.
  std::vector<std::pair<std::string, ModelSpec>> specs;
  specs.emplace_back("llama", tiny(Family::kLlama));
  ModelSpec tied = tiny(Family::kLlama);
  tied.tied_embeddings = true;
  specs.emplace_back("llama_tied", tied);
  specs.emplace_back("mistral", tiny(Family::kMistral));
  specs.emplace_back("qwen2", tiny(Family::kQwen2, 2));
  ModelSpec pruned = tiny(Family::kLlama, 3);
  pruned.layers[1].n_head = 4;
  pruned.layers[1].n_kv_head = 2;
  pruned.layers[2].ffn_dim = 4;
  specs.emplace_back("llama_per_layer", pruned);
  ModelSpec scaled = tiny(Family::kLlama);
  scaled.rope_scaling.type = "llama3";
  scaled.rope_scaling.factor = 8;
  specs.emplace_back("llama3_rope", scaled);

  for (const auto& [name, spec] : specs) {
    const std::string config = hf_config_json(spec);
    put("hf_config", name + ".json", config);
    const fs::path dir = tmp / name;
    save_hf_model(dir.string(), spec, weights(spec), name == "qwen2" ? DType::kBF16 : DType::kF32);
    const std::string st = slurp(dir / "model.safetensors");
    put("safetensors", name + ".safetensors", st);
    std::string packed;
    packed.push_back(static_cast<char>(config.size() & 0xff));
    packed.push_back(static_cast<char>((config.size() >> 8) & 0xff));
    put("hf_model", name, packed + config + st);
  }
  // A tied checkpoint stored as safetensors' dedupe writes it: lm_head.weight only, with the
  // embedding's name as a metadata alias.
  {
    TensorMap w = weights(tied);
    TensorMap hf;
    const fs::path dir = tmp / "tied_ref";
    save_hf_model(dir.string(), tied, w);
    const SafetensorsFile f((dir / "model.safetensors").string());
    for (const auto& kv : f.entries())
      hf[kv.first == "model.embed_tokens.weight" ? "lm_head.weight" : kv.first] = f.read(kv.first);
    const std::string path = (tmp / "alias.safetensors").string();
    write_safetensors(path, hf, DType::kF16, {{"format", "pt"}, {"model.embed_tokens.weight", "lm_head.weight"}});
    const std::string st = slurp(path), config = hf_config_json(tied);
    put("safetensors", "alias.safetensors", st);
    std::string packed;
    packed.push_back(static_cast<char>(config.size() & 0xff));
    packed.push_back(static_cast<char>((config.size() >> 8) & 0xff));
    put("hf_model", "llama_tied_alias", packed + config + st);
  }
  // Families slmc reads but does not write.
  put("hf_config", "gemma3.json", R"({"model_type": "gemma3_text", "hidden_size": 8, "intermediate_size": 16,
 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
 "vocab_size": 16, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"],
 "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0, "query_pre_attn_scalar": 4,
 "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "final_logit_softcapping": null})");
  put("hf_config", "phi3.json", R"({"model_type": "phi3", "hidden_size": 8, "intermediate_size": 16,
 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 16,
 "sliding_window": 2047, "partial_rotary_factor": 1.0, "eos_token_id": [2, 3]})");
  put("hf_config", "mixtral.json", R"({"model_type": "mixtral", "hidden_size": 8, "intermediate_size": 16,
 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
 "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": null})");
  put("hf_config", "openelm.json", R"({"model_type": "openelm", "model_dim": 8, "num_transformer_layers": 2,
 "head_dim": 4, "vocab_size": 16, "num_query_heads": [2, 4], "num_kv_heads": [1, 2],
 "ffn_multipliers": [0.5, 4.0], "ffn_dim_divisor": 8, "normalize_qk_projections": true,
 "share_input_output_layers": true, "rope_freq_constant": 10000})");
  put("hf_config", "qwen2_window.json", R"({"model_type": "qwen2", "hidden_size": 8, "intermediate_size": 16,
 "num_hidden_layers": 3, "num_attention_heads": 2, "vocab_size": 16, "use_sliding_window": true,
 "sliding_window": 4, "max_window_layers": 1, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})");

  // Sharded: the index the fuzz_sharded_index directory expects (its shards are fixed).
  put("sharded_index", "index.json", R"({"metadata": {"total_size": 1}, "weight_map": {
 "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.k_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.v_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.o_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.post_attention_layernorm.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.mlp.gate_proj.weight": "model-00002-of-00002.safetensors",
 "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
 "model.layers.0.mlp.down_proj.weight": "model-00002-of-00002.safetensors",
 "model.norm.weight": "model-00001-of-00002.safetensors"}})");
  put("sharded_index", "alias.json", R"({"weight_map": {
 "model.embed_tokens.weight": "model-00002-of-00002.safetensors",
 "lm_head.weight": "model-00002-of-00002.safetensors",
 "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.k_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.v_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.self_attn.o_proj.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.post_attention_layernorm.weight": "model-00001-of-00002.safetensors",
 "model.layers.0.mlp.gate_proj.weight": "model-00002-of-00002.safetensors",
 "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors",
 "model.layers.0.mlp.down_proj.weight": "model-00002-of-00002.safetensors",
 "model.norm.weight": "model-00001-of-00002.safetensors"}})");
}

// ---- model specs and .slm files ---------------------------------------------------------------

// 32 wide: q8_0 and q4_0 hold the matrices.
ModelSpec tiny32(Family f, int64_t n_layer = 1) {
  ModelSpec s = make_uniform_spec(f, 16, 32, n_layer, 2, 1, 32, 32);
  s.bos_id = 1;
  s.eos_id = 2;
  if (f == Family::kQwen2)
    for (LayerSpec& l : s.layers) l.attn_qkv_bias = true;
  return s;
}

std::vector<ModelSpec> spec_variants() {
  std::vector<ModelSpec> v;
  v.push_back(tiny32(Family::kLlama));
  ModelSpec g = tiny32(Family::kGemma3, 2);
  g.act = Activation::kGeluTanh;
  g.embed_scale = 2.8284271247461903;
  g.tied_embeddings = true;
  for (LayerSpec& l : g.layers) {
    l.qk_norm = l.post_norms = true;
    l.attn_scale = 0.5;
  }
  g.layers[0].window = 4;
  g.layers[0].rope_scaled = false;
  v.push_back(g);
  ModelSpec m = tiny32(Family::kMixtral, 1);
  m.layers[0].n_expert = 3;
  m.layers[0].n_expert_used = 2;
  v.push_back(m);
  ModelSpec q = tiny32(Family::kQwen2, 2);
  q.rope_scaling.type = "linear";
  q.rope_scaling.factor = 2;
  v.push_back(q);
  return v;
}

std::string tiny_llama2c_tokenizer() {
  // max_token_length, then (score, len, bytes) per token: <unk>, <s>, </s>, 256 byte tokens,
  // " ", a few merges.
  std::string b;
  auto i32 = [&](int32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  auto f32 = [&](float v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  std::vector<std::pair<std::string, float>> toks = {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (int c = 0; c < 256; ++c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", c);
    toks.emplace_back(buf, 0);
  }
  for (const char* t : {" ", "e", "t", "th", "the", " the", "a", "n", "an", " a", "ce", "Once", " upon"})
    toks.emplace_back(t, -static_cast<float>(toks.size()));
  i32(6);
  for (const auto& [s, score] : toks) {
    f32(score);
    i32(static_cast<int32_t>(s.size()));
    b += s;
  }
  return b;
}

std::string tiny_spm_model() {
  SpmModelProto m;
  m.raw_model_type = 2;
  m.model_type = SpmModelType::kBpe;
  m.byte_fallback = true;
  m.unk_id = 0;
  m.bos_id = 1;
  m.eos_id = 2;
  m.pad_id = -1;
  m.normalizer.present = true;
  m.normalizer.name = "identity";
  m.normalizer.add_dummy_prefix = true;
  m.normalizer.remove_extra_whitespaces = false;
  m.normalizer.escape_whitespaces = true;
  auto add = [&](const std::string& p, float score, SpmPieceType t) {
    SpmPiece sp;
    sp.piece = p;
    sp.score = score;
    sp.type = t;
    m.pieces.push_back(sp);
  };
  add("<unk>", 0, SpmPieceType::kUnknown);
  add("<s>", 0, SpmPieceType::kControl);
  add("</s>", 0, SpmPieceType::kControl);
  for (int c = 0; c < 256; ++c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", c);
    add(buf, 0, SpmPieceType::kByte);
  }
  add("<user>", 0, SpmPieceType::kUserDefined);
  int k = 0;
  for (const char* p : {"\xe2\x96\x81" "t", "he", "\xe2\x96\x81" "the", "\xe2\x96\x81", "e", "t", "h", "a",
                        "c", "\xe2\x96\x81" "a", "n", "o"})
    add(p, -static_cast<float>(++k), SpmPieceType::kNormal);
  add("zz", -99, SpmPieceType::kUnused);
  return test::serialize(m);
}

// An .slm of `s` with every matrix that fits stored in `fmt` (the rest f32).
std::string slm_bytes(const fs::path& tmp, const ModelSpec& s, codec::Format fmt,
                      const std::string& tok_kind = "", const std::string& tok_bytes = "") {
  format::SlmWriter wr;
  wr.set_spec_json(s.to_json());
  if (!tok_kind.empty()) wr.set_tokenizer(tok_kind, tok_bytes);
  for (const auto& [name, t] : weights(s)) {
    const int64_t cols = t.shape.back(), rows = t.numel() / cols;
    const codec::Format f = t.shape.size() == 2 && codec::row_fits(fmt, cols) ? fmt : codec::Format::kF32;
    wr.add_tensor(name, f, t.shape, codec::quantize_ref(f, t.data.data(), rows, cols));
  }
  const fs::path p = tmp / "x.slm";
  wr.write(p.string());
  return slurp(p);
}

void slm_seeds(const fs::path& tmp) {
  const std::pair<const char*, codec::Format> formats[] = {
      {"f32", codec::Format::kF32},   {"f16", codec::Format::kF16},   {"bf16", codec::Format::kBF16},
      {"q8_0", codec::Format::kQ8_0}, {"q4_0", codec::Format::kQ4_0}, {"q4_g64", codec::Format::kQ4_G64}};
  const std::pair<std::string, std::string> tokenizers[] = {
      {"llama2c", tiny_llama2c_tokenizer()}, {"sentencepiece", tiny_spm_model()}, {"byte", ""}, {"", ""}};
  int n = 0;
  for (const ModelSpec& s : spec_variants()) {
    const std::string id = "spec" + std::to_string(n);
    put("model_spec", id + ".json", s.to_json());
    const auto& [kind, bytes] = tokenizers[n % 4];
    for (const auto& [fname, fmt] : formats)
      put("slm", id + "_" + fname + ".slm", slm_bytes(tmp, s, fmt, kind, bytes));
    ++n;
  }
  // Matrices 64 wide, so every block format (q4_g64 included) holds them.
  const ModelSpec wide = make_uniform_spec(Family::kLlama, 8, 64, 1, 1, 1, 64, 32);
  for (const auto& [fname, fmt] : formats)
    if (codec::format_info(fmt).quantized) put("slm", std::string("wide_") + fname + ".slm", slm_bytes(tmp, wide, fmt));
}

// ---- llama2.c checkpoints and tokenizers --------------------------------------------------------

void llama2c_seeds(const std::string& shared) {
  for (const int32_t vocab : {16, -16}) {  // tied, untied
    const int32_t h[7] = {8, 16, 1, 2, 1, vocab, 4};
    std::string b(reinterpret_cast<const char*>(h), sizeof h);
    const int64_t dim = 8, hidden = 16, hs = 4, q = 8, kv = 4, v = 16, seq = 4;
    const int64_t floats = v * dim + (2 * dim + q * dim + 2 * kv * dim + q * dim + 3 * hidden * dim) +
                           dim + seq * hs + (vocab < 0 ? v * dim : 0);
    for (int64_t i = 0; i < floats; ++i) {
      const float x = static_cast<float>((i * 37) % 101) / 101.0f - 0.5f;
      b.append(reinterpret_cast<const char*>(&x), 4);
    }
    put("llama2c", vocab > 0 ? "tied.bin" : "untied.bin", b);
  }
  put("llama2c_tokenizer", "tiny.bin", tiny_llama2c_tokenizer());
  put("sentencepiece", "tiny.model", tiny_spm_model());
  if (!shared.empty()) {
    const fs::path dir = fs::path(shared) / "models" / "stories260K";
    std::error_code ec;
    if (fs::is_regular_file(dir / "tok512.bin", ec))
      put("llama2c_tokenizer", "tok512.bin", slurp(dir / "tok512.bin"));
    if (fs::is_regular_file(dir / "tok512.model", ec))
      put("sentencepiece", "tok512.model", slurp(dir / "tok512.model"));
  }
}

// ---- HDF5, byte tokenizer.json, recipes ---------------------------------------------------------

void h5_seeds(const fs::path& tmp) {
  TokenData d;
  d.tokens = {1, 5, 9, 2, 7, 3};
  d.tokenizer = "llama2c";
  d.bos_id = 1;
  write_tokens_h5((tmp / "a.h5").string(), d);
  put("h5_tokens", "stream.h5", slurp(tmp / "a.h5"));
  d.rows = 2;
  d.cols = 3;
  write_tokens_h5((tmp / "b.h5").string(), d);
  put("h5_tokens", "rows.h5", slurp(tmp / "b.h5"));
  // A logit file as LogitWriter lays it out, but contiguous (its chunks make a 550 KB file).
  {
    const hid_t f = H5Fcreate((tmp / "l.h5").string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t ldims[2] = {2, 4}, tdims[1] = {2};
    const float logits[8] = {0.1f, 0.2f, -1, 3, 0, 0, 1, 2};
    const int32_t targets[2] = {3, 1};
    const int64_t vocab = 4;
    const hid_t ls = H5Screate_simple(2, ldims, nullptr), ts = H5Screate_simple(1, tdims, nullptr);
    const hid_t scalar = H5Screate(H5S_SCALAR);
    const hid_t ld = H5Dcreate2(f, "logits", H5T_IEEE_F32LE, ls, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t td = H5Dcreate2(f, "tokens", H5T_STD_I32LE, ts, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t va = H5Acreate2(f, "vocab", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0 || ld < 0 || td < 0 || va < 0 ||
        H5Dwrite(ld, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits) < 0 ||
        H5Dwrite(td, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, targets) < 0 ||
        H5Awrite(va, H5T_NATIVE_INT64, &vocab) < 0)
      fail("cannot write the logit seed");
    H5Aclose(va);
    H5Dclose(td);
    H5Dclose(ld);
    H5Sclose(scalar);
    H5Sclose(ts);
    H5Sclose(ls);
    H5Fclose(f);
  }
  put("h5_tokens", "logits.h5", slurp(tmp / "l.h5"));
}

void text_seeds(const fs::path& tmp, const fs::path& source) {
  write_byte_tokenizer_json((tmp / "tokenizer.json").string());
  put("byte_tokenizer_json", "tokenizer.json", slurp(tmp / "tokenizer.json"));
  std::error_code ec;
  for (fs::directory_iterator it(source / "recipes", ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".yaml") put("recipe", it->path().filename().string(), slurp(it->path()));
  put("recipe", "all_keys.yaml", R"(version: 1
model: ../model
data:
  calibration: {path: calib.txt, samples: 8, seq_len: 64, seed: 3}
  eval: {path: eval.h5, seq_len: 128}
stages:
  - quantize:
      method: gptq
      bits: 4
      group_size: 64
      damp: 0.01
      ratio: 0.25
      act_order: false
      seed: 7
      targets: ["re:blk\\.[0-9]+\\.(attn|ffn)_.*", ffn_down]
      ignore: output
  - prune: {targets: re:.*expert\.[0-3]\..*}
export:
  - {format: slm, path: out.slm}
gates: {max_kl: 0.05, max_ppl_increase: 0.03, min_top1: 0.9, max_bytes: 100000}
)");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [SHARED_DATA_DIR]\n", argv[0]);
    return 2;
  }
  try {
    g_out = argv[1];
    const std::string shared = argc > 2 ? argv[2] : "";
    fs::create_directories(g_out);
    const fs::path tmp = g_out / ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    hf_seeds(tmp);
    slm_seeds(tmp);
    llama2c_seeds(shared);
    h5_seeds(tmp);
    text_seeds(tmp, fs::path(SLMC_SOURCE_DIR));
    fs::remove_all(tmp);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "slmc_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
