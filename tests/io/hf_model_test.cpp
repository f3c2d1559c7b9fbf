// Hugging Face directories: save -> load round trips, HF tensor names written by hand, sharded
// checkpoints through model.safetensors.index.json, and the errors for broken directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "compress/core/atomic_file.h"
#include "compress/core/float16.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/io/safetensors.h"
#include "tests/io/io_test_util.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using json = nlohmann::json;
using testing::expect_error;
using testing::TempDir;

using iotest::random_tensors;

ModelSpec tiny_llama(bool tied) {
  ModelSpec s = make_uniform_spec(Family::kLlama, 40, 16, 2, 4, 2, 24, 64);
  s.tied_embeddings = tied;
  return s;
}

// The HF name of every canonical tensor, spelled out here rather than taken from the library so
// that the mapping is checked independently.
std::string hf_name(const std::string& canonical) {
  static const std::map<std::string, std::string> kGlobal = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"}};
  static const std::map<std::string, std::string> kBlock = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"}};
  auto g = kGlobal.find(canonical);
  if (g != kGlobal.end()) return g->second;
  const size_t dot = canonical.find('.', 4);  // "blk.<i>.<suffix>"
  return "model.layers." + canonical.substr(4, dot - 4) + "." +
         kBlock.at(canonical.substr(dot + 1));
}

TensorMap to_hf_names(const TensorMap& canonical) {
  TensorMap out;
  for (const auto& kv : canonical) out[hf_name(kv.first)] = kv.second;
  return out;
}

void expect_same_tensors(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& kv : a) {
    auto it = b.find(kv.first);
    ASSERT_NE(it, b.end()) << kv.first;
    EXPECT_EQ(it->second.shape, kv.second.shape) << kv.first;
    EXPECT_EQ(it->second.data, kv.second.data) << kv.first;
  }
}

int64_t total_numel(const TensorMap& m) {
  int64_t n = 0;
  for (const auto& kv : m) n += kv.second.numel();
  return n;
}

TEST(HfModel, SaveLoadRoundTripF32) {
  TempDir dir;
  const std::string out = dir.file("nested/model");  // created by save_hf_model
  const ModelSpec spec = tiny_llama(false);
  const TensorMap tensors = random_tensors(spec, 1);
  save_hf_model(out, spec, tensors, DType::kF32);

  const LoadedModel m = load_hf_model(out);
  EXPECT_EQ(m.format, "hf");
  EXPECT_EQ(m.path, out);
  EXPECT_EQ(m.spec.to_json(), spec.to_json());
  expect_same_tensors(tensors, m.tensors);
  EXPECT_EQ(m.bytes_by_dtype.at("F32"), total_numel(tensors) * 4);

  // The files are what transformers expects.
  const json config = json::parse(read_file(out + "/config.json"));
  EXPECT_EQ(config.at("architectures"), json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(config.at("model_type"), "llama");
  EXPECT_EQ(config.at("torch_dtype"), "float32");
  EXPECT_EQ(config.at("tie_word_embeddings"), false);
  SafetensorsFile st(out + "/model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  for (const auto& kv : tensors) EXPECT_TRUE(st.has(hf_name(kv.first))) << kv.first;
  EXPECT_EQ(st.entries().size(), tensors.size());

  // Detection picks the HF loader for a directory.
  EXPECT_EQ(load_model(out).format, "hf");
  // No temporary files are left behind.
  for (const auto& e : std::filesystem::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(HfModel, SaveLoadBF16AndQwen2Biases) {
  TempDir dir;
  ModelSpec spec = make_uniform_spec(Family::kQwen2, 48, 16, 3, 4, 1, 20, 32, 1e6);
  spec.tied_embeddings = true;
  for (LayerSpec& l : spec.layers) l.attn_qkv_bias = true;
  spec.layers[2].window = 16;  // max_window_layers = 2
  const TensorMap tensors = random_tensors(spec, 2);
  save_hf_model(dir.str(), spec, tensors, DType::kBF16);

  const LoadedModel m = load_hf_model(dir.str());
  EXPECT_EQ(m.spec.to_json(), spec.to_json());
  EXPECT_EQ(m.bytes_by_dtype.at("BF16"), total_numel(tensors) * 2);
  for (const auto& kv : tensors) {
    const HostTensor& t = m.tensors.at(kv.first);
    EXPECT_EQ(t.source_dtype, DType::kBF16);
    for (size_t i = 0; i < t.data.size(); ++i)
      ASSERT_EQ(t.data[i], bf16_to_f32(f32_to_bf16(kv.second.data[i]))) << kv.first << i;
  }
  SafetensorsFile st(dir.file("model.safetensors"));
  EXPECT_FALSE(st.has("lm_head.weight")) << "tied head is not stored";
  EXPECT_TRUE(st.has("model.layers.1.self_attn.k_proj.bias"));
}

// A checkpoint named by hand the way transformers names it (not by our writer).
class HfDir : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = tiny_llama(false);
    tensors_ = random_tensors(spec_, 3);
    config_ = json::parse(hf_config_json(spec_));
    hf_ = to_hf_names(tensors_);
  }
  void write(const TensorMap& hf) {
    write_file_atomically(dir_.file("config.json"), config_.dump());
    write_safetensors(dir_.file("model.safetensors"), hf, DType::kF32, {{"format", "pt"}});
  }
  TempDir dir_;
  ModelSpec spec_;
  TensorMap tensors_, hf_;
  json config_;
};

TEST_F(HfDir, LoadsTransformersNames) {
  write(hf_);
  const LoadedModel m = load_hf_model(dir_.str());
  expect_same_tensors(tensors_, m.tensors);
}

TEST_F(HfDir, TiedModelIgnoresStoredLmHeadAndInvFreq) {
  config_["tie_word_embeddings"] = true;
  hf_["model.layers.0.self_attn.rotary_emb.inv_freq"].shape = {2};
  hf_["model.layers.0.self_attn.rotary_emb.inv_freq"].data = {1, 0.01f};
  write(hf_);  // lm_head.weight still present
  const LoadedModel m = load_hf_model(dir_.str());
  EXPECT_TRUE(m.spec.tied_embeddings);
  EXPECT_EQ(m.tensors.count("output.weight"), 0u);
  EXPECT_EQ(m.tensors.size(), tensors_.size() - 1);
}

TEST_F(HfDir, UnknownTensorIsAnError) {
  hf_["model.layers.0.self_attn.q_norm.weight"] = hf_.at("model.norm.weight");
  write(hf_);
  expect_error(
      [&] { load_hf_model(dir_.str()); },
      {dir_.file("model.safetensors"), "unknown tensor", "model.layers.0.self_attn.q_norm.weight"});
}

TEST_F(HfDir, LayerBeyondConfigIsAnError) {
  hf_["model.layers.2.input_layernorm.weight"] = hf_.at("model.norm.weight");
  write(hf_);
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.file("model.safetensors"), "model.layers.2.input_layernorm.weight"});
}

TEST_F(HfDir, MissingOrMisshapenTensorIsAnError) {
  TensorMap hf = hf_;
  hf.erase("model.layers.1.mlp.up_proj.weight");
  write(hf);
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.str(), "missing tensor", "blk.1.ffn_up.weight"});
  hf = hf_;
  hf["model.norm.weight"].shape = {4, 4};
  write(hf);
  expect_error([&] { load_hf_model(dir_.str()); }, {dir_.str(), "output_norm.weight", "[4, 4]"});
}

TEST_F(HfDir, MissingFilesAreErrors) {
  write_file_atomically(dir_.file("config.json"), config_.dump());
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.str(), "model.safetensors", "model.safetensors.index.json"});
  TempDir empty;
  expect_error([&] { load_hf_model(empty.str()); }, {empty.file("config.json"), "missing"});
  expect_error([&] { load_model(empty.str()); }, {empty.str(), "no config.json"});
}

TEST_F(HfDir, BadConfigNamesTheFile) {
  config_.erase("intermediate_size");
  write(hf_);
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.file("config.json"), "'intermediate_size'"});
}

// ---- sharded checkpoints ----

class HfSharded : public HfDir {
 protected:
  // Layer 0 and the embedding in shard 1, the rest in shard 2.
  void write_shards(json weight_map_override = json::object()) {
    TensorMap a, b;
    json weight_map = json::object();
    for (const auto& kv : hf_) {
      const bool first = kv.first.find("layers.0.") != std::string::npos ||
                         kv.first == "model.embed_tokens.weight";
      (first ? a : b)[kv.first] = kv.second;
      weight_map[kv.first] = first ? kShard1 : kShard2;
    }
    for (const auto& kv : weight_map_override.items()) weight_map[kv.key()] = kv.value();
    write_safetensors(dir_.file(kShard1), a, DType::kF32, {{"format", "pt"}});
    write_safetensors(dir_.file(kShard2), b, DType::kF16, {{"format", "pt"}});
    write_file_atomically(dir_.file("config.json"), config_.dump());
    const json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    write_file_atomically(dir_.file("model.safetensors.index.json"), index.dump(2));
  }
  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
};

TEST_F(HfSharded, LoadsEveryShard) {
  write_shards();
  const LoadedModel m = load_model(dir_.str());
  EXPECT_EQ(m.format, "hf");
  ASSERT_EQ(m.tensors.size(), tensors_.size());
  for (const auto& kv : tensors_) {
    const HostTensor& t = m.tensors.at(kv.first);
    const bool f32 = kv.first.rfind("blk.0.", 0) == 0 || kv.first == "token_embd.weight";
    EXPECT_EQ(t.source_dtype, f32 ? DType::kF32 : DType::kF16) << kv.first;
    for (size_t i = 0; i < t.data.size(); ++i) {
      const float x = kv.second.data[i];
      ASSERT_EQ(t.data[i], f32 ? x : f16_to_f32(f32_to_f16(x))) << kv.first;
    }
  }
  EXPECT_GT(m.bytes_by_dtype.at("F32"), 0);
  EXPECT_GT(m.bytes_by_dtype.at("F16"), 0);
  EXPECT_EQ(m.bytes_by_dtype.at("F32") / 4 + m.bytes_by_dtype.at("F16") / 2, total_numel(tensors_));
}

TEST_F(HfSharded, NameMappedToMissingShard) {
  write_shards({{"model.norm.weight", "model-00003-of-00002.safetensors"}});
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.file("model.safetensors.index.json"), "model.norm.weight",
                "model-00003-of-00002.safetensors", "does not exist"});
}

TEST_F(HfSharded, NameMissingFromItsShard) {
  write_shards({{"model.norm.weight", kShard1}});  // it is in shard 2
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.file(kShard1), "model.norm.weight", "not in this shard"});
}

TEST_F(HfSharded, ShardOutsideTheDirectory) {
  write_shards({{"model.norm.weight", "../model.safetensors"}});
  expect_error([&] { load_hf_model(dir_.str()); }, {dir_.file("model.safetensors.index.json"),
                                                    "../model.safetensors", "plain file name"});
}

TEST_F(HfSharded, CorruptShardIsValidated) {
  write_shards();
  std::filesystem::resize_file(dir_.file(kShard2), 100);
  expect_error([&] { load_hf_model(dir_.str()); }, {dir_.file(kShard2)});
}

TEST_F(HfSharded, IndexWithoutWeightMap) {
  write_shards();
  write_file_atomically(dir_.file("model.safetensors.index.json"), R"({"metadata": {}})");
  expect_error([&] { load_hf_model(dir_.str()); },
               {dir_.file("model.safetensors.index.json"), "weight_map"});
}

}  // namespace
}  // namespace slmc
