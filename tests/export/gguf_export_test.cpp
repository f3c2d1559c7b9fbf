// GGUF export and read-back: for random checkpoints of every family llama.cpp runs (and a
// structurally pruned llama with per-layer widths, written as llama.cpp's deci), the GGUF slmc
// writes loads back through load_model with exactly the tensors of the .slm of the same
// quantization, and the runtime's logits on the GGUF equal its logits on that .slm bit for bit,
// for every weight type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K). stories260K (llama2.c,
// its own tokenizer) round-trips at f32. Exports llama.cpp cannot run fail before writing.
// That llama.cpp loads these files: bench/gguf_check.sh (llama.cpp is never a test dependency).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/gguf.h"
#include "export/gguf_export.h"
#include "export/runtime/model.h"
#include "export/slm_export.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace slmc {
namespace {

using slmc::testing::expect_error;
using slmc::testing::TempDir;

const std::string kData = SLMC_SHARED_DATA;

// Random weights for `spec` (norms near 1, so activations stay in range).
LoadedModel random_model(const ModelSpec& spec, uint32_t seed) {
  LoadedModel m;
  m.spec = spec;
  m.path = "random";
  m.format = "hf";
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const TensorDecl& d : expected_tensors(spec)) {
    HostTensor t;
    t.shape = d.shape;
    t.data.resize(static_cast<size_t>(shape_numel(d.shape)));
    const bool norm = d.name.find("norm") != std::string::npos;
    const float scale = d.shape.size() == 2 ? 1.0f / std::sqrt(static_cast<float>(d.shape[1])) : 0.1f;
    for (float& v : t.data) v = norm ? 1.0f + 0.1f * normal(rng) : scale * normal(rng);
    m.tensors.emplace(d.name, std::move(t));
  }
  return m;
}

// Every family at widths the K-quants can hold (rows of 256): llama, mistral, qwen2, phi3,
// gemma3, openelm, mixtral, and a pruned llama whose layers differ.
std::vector<std::pair<std::string, ModelSpec>> family_specs() {
  std::vector<std::pair<std::string, ModelSpec>> out;
  auto uniform = [](Family f, int64_t n_layer = 2) {
    ModelSpec s = make_uniform_spec(f, 258, 256, n_layer, 4, 2, 512, 64);
    s.tied_embeddings = false;
    s.bos_id = 256;
    s.eos_id = 257;
    return s;
  };
  out.emplace_back("llama", uniform(Family::kLlama));
  {
    ModelSpec s = uniform(Family::kQwen2);
    for (LayerSpec& l : s.layers) l.attn_qkv_bias = true;
    s.tied_embeddings = true;
    out.emplace_back("qwen2", s);
  }
  out.emplace_back("phi3", uniform(Family::kPhi3));
  {
    ModelSpec s = uniform(Family::kGemma3, 3);
    s.act = Activation::kGeluTanh;
    s.embed_scale = 16.0;
    s.tied_embeddings = true;
    for (size_t i = 0; i < s.layers.size(); ++i) {
      LayerSpec& l = s.layers[i];
      l.qk_norm = l.post_norms = true;
      l.attn_scale = 1.0 / 8.0;  // 1/sqrt(head_dim 64)
      if (i != 2) {
        l.window = 8;
        l.rope_scaled = false;
      } else {
        l.rope_theta = 1000000.0;
      }
    }
    out.emplace_back("gemma3", s);
  }
  {
    ModelSpec s = uniform(Family::kOpenELM, 3);
    s.tied_embeddings = true;
    for (size_t i = 0; i < s.layers.size(); ++i) {
      LayerSpec& l = s.layers[i];
      l.qk_norm = true;
      l.head_dim = 64;
      l.n_head = 2 + 2 * static_cast<int64_t>(i);
      l.n_kv_head = 1 + static_cast<int64_t>(i);
      l.ffn_dim = 256 * (1 + static_cast<int64_t>(i));
    }
    out.emplace_back("openelm", s);
  }
  {
    ModelSpec s = uniform(Family::kMixtral);
    for (LayerSpec& l : s.layers) {
      l.n_expert = 4;
      l.n_expert_used = 2;
    }
    out.emplace_back("mixtral", s);
  }
  {
    ModelSpec s = uniform(Family::kLlama, 3);  // structurally pruned: heads and widths differ
    s.layers[1].n_head = 2;
    s.layers[1].n_kv_head = 1;
    s.layers[2].ffn_dim = 256;
    out.emplace_back("pruned_llama", s);
  }
  return out;
}

std::vector<float> runtime_logits(const std::string& path, const std::vector<int32_t>& tokens) {
  runtime::ThreadPool pool(2);
  runtime::Model m(path);
  runtime::Session s(m, pool, 64);
  std::vector<float> logits(tokens.size() * static_cast<size_t>(m.spec().vocab));
  s.forward(tokens.data(), static_cast<int64_t>(tokens.size()), logits.data(), true);
  return logits;
}

TEST(GgufExport, EveryFamilyAndTypeReadsBackAsItsSlm) {
  TempDir dir;
  const auto tok = make_byte_tokenizer();
  const std::vector<int32_t> tokens = {256, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100};
  const codec::Format types[] = {codec::Format::kF32,  codec::Format::kF16,  codec::Format::kBF16,
                                 codec::Format::kQ8_0, codec::Format::kQ4_0, codec::Format::kQ4_K,
                                 codec::Format::kQ5_K, codec::Format::kQ6_K};
  uint32_t seed = 1;
  for (const auto& [name, spec] : family_specs()) {
    const LoadedModel m = random_model(spec, seed++);
    for (codec::Format type : types) {
      // The mixture and the pruned model at two types only: the loop is what runs long.
      if ((name == "mixtral" || name == "pruned_llama") && type != codec::Format::kF32 &&
          type != codec::Format::kQ4_K)
        continue;
      SCOPED_TRACE(name + " " + codec::format_info(type).name);
      const std::string slm = dir.file(name + ".slm"), gguf = dir.file(name + ".gguf");
      // One quantization (GGUF's fallbacks: q8_0 where a K-quant cannot hold a row) written into
      // both files, as a pass's packed tensors are.
      std::unique_ptr<Progress> progress;
      std::vector<std::vector<uint8_t>> bytes;
      const ExportReport q =
          quantize_for_export(m, type, gguf_tensor_format, 2, nullptr, &progress, &bytes);
      progress->finish();
      std::map<std::string, codec::QTensor> packed;
      for (size_t i = 0; i < q.tensors.size(); ++i)
        if (q.tensors[i].shape.size() == 2)
          packed[q.tensors[i].name] = {q.tensors[i].format, q.tensors[i].shape, bytes[i]};
      const ExportReport rs = export_slm(m, type, tok.get(), slm, 2, &packed);
      const ExportReport rg = export_gguf(m, type, tok.get(), gguf, 2, &packed);
      ASSERT_EQ(rg.tensors.size(), rs.tensors.size());
      for (size_t i = 0; i < rs.tensors.size(); ++i)
        EXPECT_EQ(rg.tensors[i].format, rs.tensors[i].format) << rs.tensors[i].name;
      EXPECT_EQ(rg.tensor_bytes, rs.tensor_bytes);
      // load_model: the same spec, the same fp32 tensors.
      const LoadedModel a = load_model(slm), b = load_model(gguf);
      EXPECT_EQ(b.format, "gguf");
      ModelSpec want = spec;
      EXPECT_EQ(b.spec.to_json(), want.to_json());
      for (const auto& [tn, t] : a.tensors) {
        ASSERT_TRUE(b.tensors.count(tn)) << tn;
        ASSERT_EQ(b.tensors.at(tn).data, t.data) << tn;
      }
      // The runtime on both files: bit-identical logits.
      const std::vector<float> ls = runtime_logits(slm, tokens), lg = runtime_logits(gguf, tokens);
      ASSERT_EQ(ls.size(), lg.size());
      for (size_t i = 0; i < ls.size(); ++i) ASSERT_EQ(ls[i], lg[i]) << "logit " << i;
      for (float v : lg) ASSERT_TRUE(std::isfinite(v));
    }
  }
}

TEST(GgufExport, KQuantFallbackIsQ8_0AndReported) {
  TempDir dir;
  ModelSpec s = make_uniform_spec(Family::kLlama, 258, 256, 1, 4, 2, 320, 64);  // 320: no K-quant
  s.bos_id = 256;
  s.eos_id = 257;
  const LoadedModel m = random_model(s, 9);
  const auto tok = make_byte_tokenizer();
  const ExportReport r = export_gguf(m, codec::Format::kQ4_K, tok.get(), dir.file("m.gguf"), 2);
  EXPECT_EQ(r.n_fallback, 1);  // ffn_down (320 columns)
  for (const TensorExport& t : r.tensors)
    if (t.name == names::blk(0, names::kFfnDown)) {
      EXPECT_EQ(t.format, codec::Format::kQ8_0);
      EXPECT_NE(t.note.find("q8_0"), std::string::npos) << t.note;
    }
  EXPECT_EQ(r.container, "gguf (llama)");
  const format::GgufFile f(dir.file("m.gguf"));
  EXPECT_EQ(f.find(names::blk(0, names::kFfnDown))->format, codec::Format::kQ8_0);
  EXPECT_EQ(f.find(names::blk(0, names::kFfnUp))->format, codec::Format::kQ4_K);
}

TEST(GgufExport, Stories260KRoundTripsWithItsTokenizer) {
  TempDir dir;
  const LoadedModel m = load_model(kData + "/models/stories260K/stories260K.bin");
  const auto tok = load_tokenizer(kData + "/models/stories260K/tok512.bin");
  export_gguf(m, codec::Format::kF32, tok.get(), dir.file("s.gguf"), 2);
  const LoadedModel b = load_model(dir.file("s.gguf"));
  EXPECT_EQ(b.spec.to_json(), m.spec.to_json());
  for (const auto& [n, t] : m.tensors) ASSERT_EQ(b.tensors.at(n).data, t.data) << n;
  runtime::Model rm(dir.file("s.gguf"));
  ASSERT_NE(rm.tokenizer(), nullptr);
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  EXPECT_EQ(rm.tokenizer()->encode(text), tok->encode(text));
}

TEST(GgufExport, RefusesBeforeWritingAnything) {
  TempDir dir;
  const auto tok = make_byte_tokenizer();
  ModelSpec s = make_uniform_spec(Family::kLlama, 258, 256, 1, 4, 2, 512, 64);
  s.bos_id = 256;
  s.eos_id = 257;
  s.layers[0].attn_scale = 0.3;  // llama.cpp's llama has no softmax scale key
  const LoadedModel m = random_model(s, 3);
  const std::string out = dir.file("x.gguf");
  expect_error([&] { export_gguf(m, codec::Format::kF16, tok.get(), out, 2); },
               {"llama", "softmax scale", "llama.cpp cannot run it"});
  EXPECT_FALSE(fs::exists(out));
  s.layers[0].attn_scale = 0;
  const LoadedModel ok = random_model(s, 3);
  expect_error([&] { export_gguf(ok, codec::Format::kF16, nullptr, out, 2); }, {"no tokenizer"});
  expect_error([&] { export_gguf(ok, codec::Format::kQ4_G64, tok.get(), out, 2); },
               {"q4_g64", "no llama.cpp weight type"});
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace slmc
