// The GGUF container and the model <-> GGUF mapping, torch-free: a written file reads back value
// for value and byte for byte; every malformed field the header comment of gguf.h lists is refused
// with one slmc::Error line naming the file and the field (every truncation too, under ASan in the
// sanitizer build); specs of every family survive spec -> metadata -> spec; every tensor a spec
// implies is placed exactly once; RoPE rows permute as convert_hf_to_gguf.py's permute(); the
// tokenizers travel. That llama.cpp itself loads what we write is tested by bench/gguf_check.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/gguf.h"
#include "export/format/gguf_model.h"
#include "quantize/codec/formats.h"
#include "tests/test_util.h"

namespace slmc::format {
namespace {

using slmc::testing::append_pod;
using slmc::testing::expect_error;
using slmc::testing::read_bytes;
using slmc::testing::TempDir;
using slmc::testing::write_bytes;

std::vector<uint8_t> some_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((seed + i * 2654435761u) >> 13);
  return b;
}

GgufWriter small_writer() {
  GgufWriter w;
  w.add_kv("general.architecture", GgufValue::str("llama"));
  w.add_kv("a.u32", GgufValue::u32(4000000000u));
  w.add_kv("a.i32", GgufValue::i32(-7));
  w.add_kv("a.f32", GgufValue::f32(0.25f));
  w.add_kv("a.bool", GgufValue::boolean(true));
  w.add_kv("a.ints", GgufValue::int_array(GgufType::kInt32, {1, -2, 3}));
  w.add_kv("a.u8s", GgufValue::int_array(GgufType::kUint8, {0, 255}));
  w.add_kv("a.floats", GgufValue::float_array({1.5, -2.0}));
  w.add_kv("a.strs", GgufValue::str_array({"x", "", "\xe2\x96\x81y"}));
  w.add_tensor("t.f32", codec::Format::kF32, {3, 5}, some_bytes(60, 1));
  w.add_tensor("t.q4_0", codec::Format::kQ4_0, {2, 64}, some_bytes(2 * 36, 2));
  w.add_tensor("t.q4_k", codec::Format::kQ4_K, {1, 256}, some_bytes(144, 3));
  w.add_tensor("t.q6_k", codec::Format::kQ6_K, {2, 1, 256}, some_bytes(420, 4));
  w.add_tensor("t.vec", codec::Format::kF32, {7}, some_bytes(28, 5));
  return w;
}

TEST(Gguf, WrittenFileReadsBack) {
  TempDir dir;
  const std::string path = dir.file("a.gguf");
  const GgufWriter w = small_writer();
  w.write(path);
  const GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.file_bytes(), w.file_bytes());
  EXPECT_EQ(f.file_bytes() % kGgufDefaultAlign, 0u);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("a.u32"), 4000000000LL);
  EXPECT_EQ(f.get_int("a.i32"), -7);
  EXPECT_EQ(f.get_float("a.f32"), 0.25);
  EXPECT_EQ(f.find_kv("a.bool")->i, 1);
  EXPECT_EQ(f.find_kv("a.ints")->ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.find_kv("a.u8s")->ints, (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(f.find_kv("a.floats")->floats, (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(f.find_kv("a.strs")->strs, (std::vector<std::string>{"x", "", "\xe2\x96\x81y"}));
  ASSERT_EQ(f.tensors().size(), 5u);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> want = {
      {"t.f32", {3, 5}}, {"t.q4_0", {2, 64}}, {"t.q4_k", {1, 256}}, {"t.q6_k", {2, 1, 256}}, {"t.vec", {7}}};
  uint32_t seed = 1;
  for (const auto& [name, shape] : want) {
    const GgufTensor* t = f.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, shape) << name;
    EXPECT_EQ((t->offset - f.data_offset()) % kGgufDefaultAlign, 0u) << name;
    const std::vector<uint8_t> b = some_bytes(t->n_bytes, seed++);
    EXPECT_EQ(std::memcmp(f.data(*t), b.data(), b.size()), 0) << name;
  }
  EXPECT_EQ(f.find("t.q6_k")->format, codec::Format::kQ6_K);
  // ne[0] is the row width on disk: the first dim written after n_dims.
  const std::string raw = read_bytes(path);
  EXPECT_EQ(raw.compare(0, 4, "GGUF"), 0);
  expect_error([&] { f.get_str("a.u32"); }, {path, "a.u32", "uint32", "expected string"});
  expect_error([&] { f.get_int("missing.key"); }, {path, "missing.key"});
}

TEST(Gguf, WriterRefusesWhatGgufCannotHold) {
  GgufWriter w;
  expect_error([&] { w.add_tensor("x", codec::Format::kQ4_G64, {1, 64}, some_bytes(36, 0)); },
               {"x", "q4_g64", "no ggml type"});
  expect_error([&] { w.add_tensor("x", codec::Format::kQ4_0, {1, 64}, some_bytes(35, 0)); },
               {"x", "35 bytes", "36"});
  w.add_kv("k", GgufValue::u32(1));
  expect_error([&] { w.add_kv("k", GgufValue::u32(2)); }, {"'k'", "twice"});
}

// A hand-built file, so every field can be corrupted on its own.
struct RawFile {
  std::string head;      // magic .. tensor infos
  uint64_t data_at = 0;  // offset of the data section
  std::string bytes;     // the whole file
};

void put_str(std::string* o, const std::string& s) {
  append_pod(o, static_cast<uint64_t>(s.size()));
  *o += s;
}

// One key "general.architecture" = "llama" (kv_type 8) and one tensor "w" (`type`, ne0 x 2).
std::string raw_file(uint32_t type, uint64_t ne0, uint64_t offset, uint64_t data_bytes,
                     uint32_t version = 3, uint32_t kv_type = 8, uint64_t str_len = 5) {
  std::string o = "GGUF";
  append_pod(&o, version);
  append_pod(&o, uint64_t{1});
  append_pod(&o, uint64_t{1});
  put_str(&o, "general.architecture");
  append_pod(&o, kv_type);
  append_pod(&o, str_len);
  o += "llama";
  put_str(&o, "w");
  append_pod(&o, uint32_t{2});
  append_pod(&o, ne0);
  append_pod(&o, uint64_t{2});
  append_pod(&o, type);
  append_pod(&o, offset);
  o.resize((o.size() + 31) / 32 * 32, '\0');
  o.append(data_bytes, '\x11');
  return o;
}

void expect_bad(const std::string& bytes, std::initializer_list<std::string> parts) {
  TempDir dir;
  const std::string p = dir.file("bad.gguf");
  write_bytes(p, bytes);
  std::vector<std::string> all(parts);
  all.push_back(p);
  try {
    GgufFile f(p);
    ADD_FAILURE() << "accepted a malformed file, expected: " << *parts.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& s : all) EXPECT_NE(msg.find(s), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Gguf, HandBuiltFileIsValid) {
  TempDir dir;
  write_bytes(dir.file("ok.gguf"), raw_file(2, 64, 0, 72));
  const GgufFile f(dir.file("ok.gguf"));
  EXPECT_EQ(f.find("w")->shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(f.find("w")->n_bytes, 72u);
}

TEST(Gguf, MalformedFilesAreRefusedNamingTheField) {
  expect_bad("GGU", {"truncated", "magic"});
  expect_bad(std::string("GGML") + std::string(40, '\0'), {"not a GGUF file"});
  expect_bad(raw_file(2, 64, 0, 72, /*version=*/7), {"version 7"});
  expect_bad(raw_file(2, 64, 0, 72, 3, /*kv_type=*/13), {"general.architecture", "unknown value type id 13"});
  expect_bad(raw_file(2, 64, 0, 72, 3, 8, /*str_len=*/1u << 30), {"value of 'general.architecture'", "longer than"});
  expect_bad(raw_file(/*type=*/6, 64, 0, 72), {"tensor w", "ggml type id 6"});   // Q5_0
  expect_bad(raw_file(/*type=*/99, 64, 0, 72), {"tensor w", "ggml type id 99"});
  expect_bad(raw_file(2, /*ne0=*/48, 0, 72), {"tensor w", "48", "q4_0", "blocks of 32"});
  expect_bad(raw_file(12, /*ne0=*/64, 0, 72), {"tensor w", "q4_k", "blocks of 256"});
  expect_bad(raw_file(2, 64, /*offset=*/32, 72), {"tensor w", "runs past the end"});
  expect_bad(raw_file(2, 64, 0, /*data_bytes=*/71), {"tensor w", "runs past the end"});
  expect_bad(raw_file(2, 64, /*offset=*/3, 80), {"tensor w", "offset 3", "alignment"});
  expect_bad(raw_file(2, /*ne0=*/0, 0, 72), {"tensor w", "dimension 0 = 0"});
  // Counts beyond what the file can hold are refused before anything is allocated.
  std::string many = raw_file(2, 64, 0, 72);
  const uint64_t huge = uint64_t{1} << 60;
  std::memcpy(&many[8], &huge, 8);
  expect_bad(many, {"tensor count"});
  std::memcpy(&many[8], "\x01\0\0\0\0\0\0\0", 8);
  std::memcpy(&many[16], &huge, 8);
  expect_bad(many, {"metadata count"});
}

TEST(Gguf, EveryTruncationIsRefused) {
  TempDir dir;
  const std::string p = dir.file("full.gguf");
  small_writer().write(p);
  const std::string full = read_bytes(p);
  // Cut inside the header, the metadata, the tensor infos and the data: each is an error, never a
  // crash (ASan in the sanitizer build checks the reads).
  for (size_t n = 0; n < full.size(); n += (n < 700 ? 1 : 97)) {
    write_bytes(p, full.substr(0, n));
    EXPECT_THROW(GgufFile f(p), Error) << "accepted " << n << " of " << full.size() << " bytes";
  }
}

TEST(Gguf, DuplicatesAndOverlapsAreRefused) {
  // Two f32 tensors of 256 bytes, the second at `off2`.
  auto two = [](const char* name2, uint64_t off2) {
    std::string o = "GGUF";
    append_pod(&o, uint32_t{3});
    append_pod(&o, uint64_t{2});
    append_pod(&o, uint64_t{0});
    for (auto [name, off] : {std::pair<const char*, uint64_t>{"w", 0}, {name2, off2}}) {
      put_str(&o, name);
      append_pod(&o, uint32_t{1});
      append_pod(&o, uint64_t{64});
      append_pod(&o, uint32_t{0});
      append_pod(&o, off);
    }
    o.resize((o.size() + 31) / 32 * 32, '\0');
    o.append(512, '\0');
    return o;
  };
  expect_bad(two("v", 32), {"tensors w and v overlap"});
  expect_bad(two("w", 256), {"tensor w appears twice"});
  {
    std::string o = "GGUF";
    append_pod(&o, uint32_t{3});
    append_pod(&o, uint64_t{0});
    append_pod(&o, uint64_t{2});
    for (int i = 0; i < 2; ++i) {
      put_str(&o, "k");
      append_pod(&o, uint32_t{4});
      append_pod(&o, uint32_t{1});
    }
    expect_bad(o, {"'k'", "twice"});
  }
}

// ---- the model mapping ----

ModelSpec llama_like(Family fam, int64_t n_layer = 2) {
  ModelSpec s = make_uniform_spec(fam, 300, 64, n_layer, 4, 2, 96, 128);
  s.tied_embeddings = false;
  return s;
}

std::vector<ModelSpec> family_specs() {
  std::vector<ModelSpec> out;
  out.push_back(llama_like(Family::kLlama));
  {
    ModelSpec s = llama_like(Family::kQwen2);
    for (LayerSpec& l : s.layers) l.attn_qkv_bias = true;
    s.tied_embeddings = true;
    out.push_back(s);
  }
  {
    ModelSpec s = llama_like(Family::kPhi3);
    out.push_back(s);
  }
  {
    ModelSpec s = make_uniform_spec(Family::kGemma3, 300, 64, 3, 2, 1, 96, 128);
    s.act = Activation::kGeluTanh;
    s.embed_scale = 8.0;
    s.tied_embeddings = true;
    s.bos_id = 2;
    s.eos_id = 1;
    for (size_t i = 0; i < s.layers.size(); ++i) {
      LayerSpec& l = s.layers[i];
      l.qk_norm = l.post_norms = true;
      l.attn_scale = 1.0 / std::sqrt(32.0);
      l.rope_theta = 1000000.0;
      if (i != 2) {
        l.window = 16;
        l.rope_theta = 10000.0;
        l.rope_scaled = false;
      }
    }
    out.push_back(s);
  }
  {
    ModelSpec s = llama_like(Family::kOpenELM, 3);
    s.tied_embeddings = true;
    for (size_t i = 0; i < s.layers.size(); ++i) {
      s.layers[i].qk_norm = true;
      s.layers[i].n_head = 2 + 2 * static_cast<int64_t>(i);
      s.layers[i].n_kv_head = 1 + static_cast<int64_t>(i);
      s.layers[i].head_dim = 16;
      s.layers[i].ffn_dim = 64 + 32 * static_cast<int64_t>(i);
    }
    out.push_back(s);
  }
  {
    ModelSpec s = llama_like(Family::kMixtral);
    for (LayerSpec& l : s.layers) {
      l.n_expert = 4;
      l.n_expert_used = 2;
    }
    out.push_back(s);
  }
  {
    // A structurally pruned llama: heads and FFN widths per layer (llama.cpp's deci).
    ModelSpec s = llama_like(Family::kLlama, 3);
    s.layers[1].n_head = 2;
    s.layers[1].n_kv_head = 1;
    s.layers[2].ffn_dim = 32;
    out.push_back(s);
  }
  {
    ModelSpec s = llama_like(Family::kLlama);
    s.rope_scaling.type = "llama3";
    s.rope_scaling.factor = 8;
    s.rope_scaling.original_max_position = 64;
    out.push_back(s);
  }
  return out;
}

// A GGUF with the model's keys and zero tensors of the planned shapes, read back.
ModelSpec through_gguf(const ModelSpec& s, const std::string& path) {
  const GgufArch a = gguf_arch_for(s);
  GgufWriter w;
  add_gguf_model_kv(s, a, w);
  w.add_kv("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(s.bos_id)));
  w.add_kv("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(s.eos_id)));
  for (const GgufTensorPlan& p : gguf_tensor_plan(s, a)) {
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < p.shape.size(); ++d) rows *= p.shape[d];
    w.add_tensor(p.name, codec::Format::kF32, p.shape,
                 std::vector<uint8_t>(static_cast<size_t>(rows * p.shape.back()) * 4));
  }
  for (const GgufExtraTensor& t : gguf_extra_tensors(s, a))
    w.add_tensor(t.name, codec::Format::kF32, {static_cast<int64_t>(t.data.size())},
                 std::vector<uint8_t>(t.data.size() * 4));
  w.write(path);
  const GgufFile f(path);
  const ModelSpec back = gguf_model_spec(f);
  gguf_sources(f, back);  // every tensor accounted for
  return back;
}

TEST(GgufModel, EveryFamilySpecSurvivesTheMetadata) {
  TempDir dir;
  const std::vector<std::string> archs = {"llama", "qwen2", "phi3", "gemma3", "openelm", "llama", "deci", "llama"};
  const std::vector<ModelSpec> specs = family_specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const ModelSpec& s = specs[i];
    EXPECT_EQ(gguf_arch_for(s).name, archs[i]) << family_name(s.family);
    const ModelSpec back = through_gguf(s, dir.file(std::to_string(i) + ".gguf"));
    EXPECT_EQ(back.to_json(), s.to_json()) << family_name(s.family);
  }
}

TEST(GgufModel, PlanPlacesEveryTensorOnce) {
  for (const ModelSpec& s : family_specs()) {
    std::map<std::string, int> seen;
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const TensorDecl& d : expected_tensors(s)) shapes[d.name] = d.shape;
    for (const GgufTensorPlan& p : gguf_tensor_plan(s, gguf_arch_for(s))) {
      int64_t rows = 0;
      for (size_t k = 0; k < p.parts.size(); ++k) {
        ++seen[p.parts[k]];
        const std::vector<int64_t>& sh = shapes.at(p.parts[k]);
        // A matrix's rows are its rows; a vector is one row, or (a bias whose values follow
        // permuted heads) rows of one value.
        EXPECT_EQ(p.part_rows[k], sh.size() == 2 ? sh[0] : p.cols == 1 ? sh[0] : 1) << p.parts[k];
        rows += p.part_rows[k];
      }
      EXPECT_EQ(shape_numel(p.shape), rows * p.cols) << p.name;
    }
    EXPECT_EQ(seen.size(), shapes.size()) << family_name(s.family);
    for (const auto& [n, c] : seen) EXPECT_EQ(c, 1) << n;
  }
}

TEST(GgufModel, RopeRowsFollowConvertHfToGgufPermute) {
  // permute(w, n_head): w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): stored row h*hd + 2j + t
  // is row h*hd + t*hd/2 + j of the rotate-half weights.
  const int64_t hd = 8;
  std::vector<int64_t> expect = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
  for (int64_t r = 0; r < 16; ++r) EXPECT_EQ(gguf_rope_source_row(r, hd), expect[static_cast<size_t>(r)]);
}

TEST(GgufModel, RefusesWhatLlamaCppCannotRun) {
  ModelSpec s = llama_like(Family::kLlama);
  s.layers[1].head_dim = 8;
  s.layers[1].n_head = 8;
  s.layers[1].n_kv_head = 4;
  expect_error([&] { gguf_arch_for(s); }, {"head_dim"});
  s = llama_like(Family::kLlama);
  s.layers[0].attn_scale = 0.5;
  expect_error([&] { gguf_arch_for(s); }, {"llama", "softmax scale"});
  s = llama_like(Family::kOpenELM);
  for (LayerSpec& l : s.layers) l.qk_norm = true;
  expect_error([&] { gguf_arch_for(s); }, {"openelm", "untied"});
  s = llama_like(Family::kPhi3);
  s.layers[0].ffn_dim = 32;
  expect_error([&] { gguf_arch_for(s); }, {"phi3", "per-layer"});
}

TEST(GgufModel, ByteTokenizerTravelsAsGpt2) {
  TempDir dir;
  const auto tok = make_byte_tokenizer();
  GgufWriter w;
  add_gguf_tokenizer_kv(*tok, 260, w);  // two padding ids
  w.write(dir.file("t.gguf"));
  const GgufFile f(dir.file("t.gguf"));
  EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.find_kv("tokenizer.ggml.tokens")->strs.size(), 260u);
  EXPECT_EQ(f.find_kv("tokenizer.ggml.tokens")->strs[32], "\xc4\xa0");  // GPT-2's space
  EXPECT_EQ(f.find_kv("tokenizer.ggml.token_type")->ints[259], 5);
  const auto back = gguf_tokenizer(f);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->kind(), "byte");
  const std::string text = "Hello, w\xc3\xb6rld\n\t  x";
  EXPECT_EQ(back->encode(text), tok->encode(text));
}

TEST(GgufModel, SentencePieceAndLlama2cTokenizersTravelAsLlama) {
  const std::string dir_s = std::string(SLMC_SHARED_DATA) + "/models/stories260K/";
  const std::string text = read_bytes(std::string(SLMC_SHARED_DATA) + "/text/tinystories_sample.txt").substr(0, 20000);
  ASSERT_GT(text.size(), 1000u) << "shared data missing";
  TempDir dir;
  for (const char* file : {"tok512.model", "tok512.bin"}) {
    const auto tok = load_tokenizer(dir_s + file);
    GgufWriter w;
    add_gguf_tokenizer_kv(*tok, tok->vocab_size(), w);
    w.write(dir.file("t.gguf"));
    const GgufFile f(dir.file("t.gguf"));
    EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "llama");
    const auto back = gguf_tokenizer(f);
    ASSERT_NE(back, nullptr);
    EXPECT_EQ(back->kind(), "sentencepiece");
    EXPECT_EQ(back->encode(text), tok->encode(text)) << file;
    EXPECT_EQ(back->bos_id(), tok->bos_id());
  }
}

}  // namespace
}  // namespace slmc::format
