// Tied embeddings stored once (issue 13 item 2): the same weights stored in every layout real
// checkpoints use load to the same model and give the same logits (LibTorch forward), and a
// tied checkpoint slmc writes back has Hugging Face's layout.
//   A  model.embed_tokens.weight only (transformers' save_pretrained; what slmc writes)
//   B  lm_head.weight only, __metadata__ {"model.embed_tokens.weight": "lm_head.weight"}
//      (safetensors.torch.save_model's dedupe of shared tensors)
//   C  lm_head.weight only, no alias
//   D  both names stored, lm_head different (transformers ties them: lm_head is ignored)
//   E  sharded: the index maps model.embed_tokens.weight to a shard holding B's lm_head + alias
//   F  sharded: the index lists lm_head.weight only
//   G  untied config, one stored tensor serving both names through the alias
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/io/safetensors.h"
#include "compress/model/transformer.h"
#include "tests/io/io_test_util.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using json = nlohmann::json;
using testing::expect_error;
using testing::TempDir;

constexpr const char* kEmbed = "model.embed_tokens.weight";
constexpr const char* kHead = "lm_head.weight";
constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

ModelSpec tied_spec() {
  ModelSpec s = make_uniform_spec(Family::kLlama, 48, 16, 2, 4, 2, 24, 64);
  s.tied_embeddings = true;
  return s;
}

// The HF tensors of the reference directory A, as slmc wrote them.
TensorMap hf_tensors(const std::string& dir) {
  const SafetensorsFile f(dir + "/model.safetensors");
  TensorMap out;
  for (const auto& kv : f.entries()) out[kv.first] = f.read(kv.first);
  return out;
}

torch::Tensor logits_of(const std::string& dir) {
  const LoadedModel m = load_model(dir);
  const Transformer tf(m.spec, m.tensors);
  const torch::Tensor ids = torch::tensor({{1, 5, 9, 47, 0, 3, 3, 20}}, torch::kInt64);
  return tf.forward(ids);
}

class Tied : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = tied_spec();
    save_hf_model(ref_.str(), spec_, iotest::random_tensors(spec_, 7));
    config_ = read_file(ref_.file("config.json"));
    hf_ = hf_tensors(ref_.str());
    ref_logits_ = logits_of(ref_.str());
  }
  // A directory with the reference config (optionally edited) and `tensors` in one file.
  std::string single(const TempDir& d, const TensorMap& tensors,
                     const std::map<std::string, std::string>& metadata) {
    write_file_atomically(d.file("config.json"), config_);
    write_safetensors(d.file("model.safetensors"), tensors, DType::kF32, metadata);
    return d.str();
  }
  TensorMap head_only() const {
    TensorMap t = hf_;
    t[kHead] = t.at(kEmbed);
    t.erase(kEmbed);
    return t;
  }
  void expect_same_logits(const std::string& dir, const char* what) {
    const torch::Tensor l = logits_of(dir);
    EXPECT_TRUE(torch::equal(l, ref_logits_)) << what << ": max diff "
                                              << (l - ref_logits_).abs().max().item<float>();
  }

  TempDir ref_;
  ModelSpec spec_;
  std::string config_;
  TensorMap hf_;
  torch::Tensor ref_logits_;
};

TEST_F(Tied, WrittenLikeSavePretrained) {
  const SafetensorsFile f(ref_.file("model.safetensors"));
  EXPECT_TRUE(f.has(kEmbed));
  EXPECT_FALSE(f.has(kHead)) << "transformers' save_pretrained stores a tied head once, as the embedding";
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_TRUE(json::parse(config_).at("tie_word_embeddings").get<bool>());
}

TEST_F(Tied, HeadOnlyWithMetadataAlias) {
  TempDir d;
  expect_same_logits(single(d, head_only(), {{"format", "pt"}, {kEmbed, kHead}}), "B");
}

TEST_F(Tied, HeadOnlyWithoutAlias) {
  TempDir d;
  expect_same_logits(single(d, head_only(), {{"format", "pt"}}), "C");
}

TEST_F(Tied, BothStoredHeadIgnored) {
  TempDir d;
  TensorMap t = hf_;
  t[kHead] = t.at(kEmbed);
  for (float& v : t[kHead].data) v = -v;  // transformers ties the head to the embedding
  expect_same_logits(single(d, t, {{"format", "pt"}}), "D");
}

TEST_F(Tied, ShardedWithAliasOrHeadOnly) {
  for (const bool list_embed : {true, false}) {
    TempDir d;
    TensorMap a, b;
    json weight_map = json::object();
    for (const auto& kv : head_only()) {
      const bool first = kv.first.find("layers.0.") != std::string::npos;
      (first ? a : b)[kv.first] = kv.second;
      weight_map[kv.first] = first ? kShard1 : kShard2;
    }
    if (list_embed) {  // E: the index names the embedding; its shard holds it as an alias
      weight_map.erase(kHead);
      weight_map[kEmbed] = kShard2;
    }
    write_safetensors(d.file(kShard1), a, DType::kF32, {{"format", "pt"}});
    write_safetensors(d.file(kShard2), b, DType::kF32, {{"format", "pt"}, {kEmbed, kHead}});
    write_file_atomically(d.file("config.json"), config_);
    write_file_atomically(d.file("model.safetensors.index.json"),
                          json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());
    expect_same_logits(d.str(), list_embed ? "E" : "F");
  }
}

TEST_F(Tied, UntiedConfigWithOneStoredTensor) {
  // G: an untied model whose head equals its embedding, deduplicated by safetensors.
  json c = json::parse(config_);
  c["tie_word_embeddings"] = false;
  TempDir d;
  write_file_atomically(d.file("config.json"), c.dump());
  write_safetensors(d.file("model.safetensors"), head_only(), DType::kF32,
                    {{"format", "pt"}, {kEmbed, kHead}});
  const LoadedModel m = load_model(d.str());
  EXPECT_FALSE(m.spec.tied_embeddings);
  EXPECT_EQ(m.tensors.at(names::kOutput).data, m.tensors.at(names::kTokenEmbd).data);
  EXPECT_EQ(m.bytes_by_dtype.at("F32") % 4, 0);
  const torch::Tensor l = Transformer(m.spec, m.tensors).forward(
      torch::tensor({{1, 5, 9, 47, 0, 3, 3, 20}}, torch::kInt64));
  EXPECT_TRUE(torch::equal(l, ref_logits_));
  // Without the alias the embedding is missing: untied models need both.
  write_safetensors(d.file("model.safetensors"), head_only(), DType::kF32, {{"format", "pt"}});
  expect_error([&] { load_model(d.str()); }, {d.str(), "missing tensor token_embd.weight"});
}

TEST_F(Tied, WrittenBackInHuggingFaceLayout) {
  TempDir d, out;
  const LoadedModel m = load_model(single(d, head_only(), {{"format", "pt"}, {kEmbed, kHead}}));
  save_hf_model(out.str(), m.spec, m.tensors);
  const SafetensorsFile f(out.file("model.safetensors"));
  std::set<std::string> names, ref_names;
  for (const auto& kv : f.entries()) names.insert(kv.first);
  for (const auto& kv : hf_) ref_names.insert(kv.first);
  EXPECT_EQ(names, ref_names);
  EXPECT_FALSE(f.has(kHead));
  EXPECT_EQ(f.read(kEmbed).data, hf_.at(kEmbed).data);
  expect_same_logits(out.str(), "written back");
}

TEST_F(Tied, AliasesAreOnlyFollowedForKnownNames) {
  // Metadata is free text: an entry that happens to name a stored tensor adds nothing.
  TempDir d;
  expect_same_logits(single(d, hf_, {{"format", "pt"}, {"note", kEmbed}, {kHead, kEmbed}}),
                     "metadata noise");
  // An alias to a tensor that is not stored is not followed.
  TempDir e;
  TensorMap t = head_only();
  t.erase(kHead);
  single(e, t, {{"format", "pt"}, {kEmbed, kHead}});
  expect_error([&] { load_model(e.str()); }, {e.str(), "missing tensor token_embd.weight"});
}

}  // namespace
}  // namespace slmc
