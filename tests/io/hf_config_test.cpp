// config.json -> ModelSpec for every family (llama, mistral, qwen2, phi3, gemma3_text, mixtral,
// openelm), and the errors for configs we refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "compress/io/model_loader.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using json = nlohmann::json;
using testing::expect_error;

const std::string kOrigin = "/models/tiny/config.json";

json llama_config() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"hidden_size", 64},
              {"intermediate_size", 172},
              {"num_hidden_layers", 3},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 4},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0},
              {"vocab_size", 512},
              {"max_position_embeddings", 256},
              {"tie_word_embeddings", true},
              {"bos_token_id", 1},
              {"eos_token_id", 2},
              {"hidden_act", "silu"},
              {"torch_dtype", "bfloat16"}};
}

ModelSpec parse(const json& j) { return parse_hf_config(j.dump(), kOrigin); }

TEST(HfConfig, Llama) {
  const ModelSpec s = parse(llama_config());
  EXPECT_EQ(s.family, Family::kLlama);
  EXPECT_EQ(s.d_model, 64);
  EXPECT_EQ(s.vocab, 512);
  EXPECT_EQ(s.max_seq, 256);
  EXPECT_DOUBLE_EQ(s.norm_eps, 1e-5);
  EXPECT_TRUE(s.tied_embeddings);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  EXPECT_EQ(s.rope_scaling.type, "none");
  ASSERT_EQ(s.n_layer(), 3);
  for (const LayerSpec& l : s.layers) {
    EXPECT_EQ(l.n_head, 8);
    EXPECT_EQ(l.n_kv_head, 4);
    EXPECT_EQ(l.head_dim, 8);
    EXPECT_EQ(l.ffn_dim, 172);
    EXPECT_DOUBLE_EQ(l.rope_theta, 500000.0);
    EXPECT_FALSE(l.attn_qkv_bias || l.attn_out_bias || l.mlp_bias);
    EXPECT_EQ(l.window, 0);
  }
}

TEST(HfConfig, DefaultsFollowTransformers) {
  json j = llama_config();
  for (const char* k : {"num_key_value_heads", "rope_theta", "tie_word_embeddings", "rms_norm_eps",
                        "max_position_embeddings", "hidden_act"})
    j.erase(k);
  const ModelSpec s = parse(j);
  EXPECT_EQ(s.layers[0].n_kv_head, 8);  // = num_attention_heads
  EXPECT_DOUBLE_EQ(s.layers[0].rope_theta, 10000.0);
  EXPECT_FALSE(s.tied_embeddings);
  EXPECT_DOUBLE_EQ(s.norm_eps, 1e-6);
  EXPECT_EQ(s.max_seq, 2048);
}

TEST(HfConfig, LlamaBiasesHeadDimAndTokenIds) {
  json j = llama_config();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j["head_dim"] = 16;  // differs from hidden / heads
  j["eos_token_id"] = {128001, 128009};
  j["vocab_size"] = 130000;
  j["bos_token_id"] = nullptr;
  const ModelSpec s = parse(j);
  EXPECT_TRUE(s.layers[0].attn_qkv_bias);
  EXPECT_TRUE(s.layers[0].attn_out_bias);
  EXPECT_TRUE(s.layers[0].mlp_bias);
  EXPECT_EQ(s.layers[0].head_dim, 16);
  EXPECT_EQ(s.eos_id, 128001);
  EXPECT_EQ(s.bos_id, -1);
}

TEST(HfConfig, Llama3RopeScaling) {
  json j = llama_config();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  ModelSpec s = parse(j);
  EXPECT_EQ(s.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(s.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(s.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(s.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(s.rope_scaling.original_max_position, 8192);
  // The older spelling `type`, and "default" meaning no scaling.
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  EXPECT_EQ(parse(j).rope_scaling.type, "llama3");
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(j).rope_scaling.type, "none");
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(j).rope_scaling.type, "none");
}

TEST(HfConfig, RopeParametersOfTransformers5) {
  json j = llama_config();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  const ModelSpec s = parse(j);
  EXPECT_DOUBLE_EQ(s.layers[0].rope_theta, 1e6);
  EXPECT_EQ(s.rope_scaling.type, "none");
}

TEST(HfConfig, MistralSlidingWindow) {
  json j = llama_config();
  j["model_type"] = "mistral";
  j["sliding_window"] = 128;
  ModelSpec s = parse(j);
  EXPECT_EQ(s.family, Family::kMistral);
  for (const LayerSpec& l : s.layers) EXPECT_EQ(l.window, 128);
  j["sliding_window"] = nullptr;
  for (const LayerSpec& l : parse(j).layers) EXPECT_EQ(l.window, 0);
  j.erase("sliding_window");  // MistralConfig's default
  for (const LayerSpec& l : parse(j).layers) EXPECT_EQ(l.window, 4096);
}

TEST(HfConfig, Qwen2BiasesAndWindows) {
  json j = llama_config();
  j["model_type"] = "qwen2";
  j["num_hidden_layers"] = 4;
  j["sliding_window"] = 64;
  j["max_window_layers"] = 2;
  j["use_sliding_window"] = false;
  ModelSpec s = parse(j);
  EXPECT_EQ(s.family, Family::kQwen2);
  for (const LayerSpec& l : s.layers) {
    EXPECT_TRUE(l.attn_qkv_bias);
    EXPECT_FALSE(l.attn_out_bias);
    EXPECT_FALSE(l.mlp_bias);
    EXPECT_EQ(l.window, 0) << "sliding_window is ignored unless use_sliding_window";
  }
  j["use_sliding_window"] = true;  // layers >= max_window_layers slide
  s = parse(j);
  EXPECT_EQ(s.layers[0].window, 0);
  EXPECT_EQ(s.layers[1].window, 0);
  EXPECT_EQ(s.layers[2].window, 64);
  EXPECT_EQ(s.layers[3].window, 64);
  j["layer_types"] = {"sliding_attention", "full_attention", "full_attention", "sliding_attention"};
  s = parse(j);
  EXPECT_EQ(s.layers[0].window, 64);
  EXPECT_EQ(s.layers[1].window, 0);
  EXPECT_EQ(s.layers[3].window, 64);
}

// ---- refused configs: the message names the file, the key and the value ----

TEST(HfConfigErrors, MissingKey) {
  json j = llama_config();
  j.erase("hidden_size");
  expect_error([&] { parse(j); }, {kOrigin, "missing", "'hidden_size'"});
  j = llama_config();
  j.erase("model_type");
  expect_error([&] { parse(j); }, {kOrigin, "missing", "'model_type'"});
}

TEST(HfConfigErrors, WrongTypes) {
  json j = llama_config();
  j["num_hidden_layers"] = "3";
  expect_error([&] { parse(j); }, {kOrigin, "'num_hidden_layers'", "integer", "\"3\""});
  j = llama_config();
  j["hidden_size"] = 64.5;
  expect_error([&] { parse(j); }, {kOrigin, "'hidden_size'", "64.5"});
  j = llama_config();
  j["tie_word_embeddings"] = 1;
  expect_error([&] { parse(j); }, {kOrigin, "'tie_word_embeddings'", "true or false"});
  j = llama_config();
  j["rms_norm_eps"] = "small";
  expect_error([&] { parse(j); }, {kOrigin, "'rms_norm_eps'", "number"});
  j = llama_config();
  j["vocab_size"] = 0;
  expect_error([&] { parse(j); }, {kOrigin, "'vocab_size' = 0 is outside [1, 16777216]"});
  expect_error([] { parse_hf_config("{not json", kOrigin); }, {kOrigin, "not valid JSON"});
  expect_error([] { parse_hf_config("[1]", kOrigin); }, {kOrigin, "object"});
}

TEST(HfConfigErrors, InconsistentDims) {
  json j = llama_config();
  j["num_attention_heads"] = 7;
  j["num_key_value_heads"] = 7;
  expect_error([&] { parse(j); }, {kOrigin, "hidden_size 64", "num_attention_heads 7"});
  j = llama_config();
  j["num_key_value_heads"] = 3;
  expect_error([&] { parse(j); }, {kOrigin, "num_attention_heads 8", "num_key_value_heads 3"});
  j = llama_config();
  j["head_dim"] = 7;  // odd: no RoPE pairs
  expect_error([&] { parse(j); }, {kOrigin, "head_dim 7"});
  j = llama_config();
  j["bos_token_id"] = 600;
  expect_error([&] { parse(j); }, {kOrigin, "bos_id 600"});
}

TEST(HfConfigErrors, UnknownModelType) {
  json j = llama_config();
  j["model_type"] = "gpt2";
  expect_error([&] { parse(j); }, {kOrigin, "'model_type' = \"gpt2\" is not supported", "llama"});
}

TEST(HfConfigErrors, UnknownRopeType) {
  json j = llama_config();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_error([&] { parse(j); }, {kOrigin, "rope_scaling.rope_type", "\"yarn\""});
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  expect_error([&] { parse(j); }, {kOrigin, "rope_scaling.type", "\"dynamic\""});
  j["rope_scaling"] = {{"type", "linear"}};
  expect_error([&] { parse(j); }, {kOrigin, "missing", "'rope_scaling.factor'"});
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_error([&] { parse(j); }, {kOrigin, "missing", "'rope_scaling.low_freq_factor'"});
}

TEST(HfConfigErrors, BadWindows) {
  json j = llama_config();
  j["model_type"] = "qwen2";
  j["use_sliding_window"] = true;
  j["sliding_window"] = 32;
  j["layer_types"] = {"full_attention"};
  expect_error([&] { parse(j); }, {kOrigin, "'layer_types'", "3"});
  j["layer_types"] = {"full_attention", "chunked_attention", "full_attention"};
  expect_error([&] { parse(j); }, {kOrigin, "layer_types[1]", "chunked_attention"});
  j = llama_config();
  j["model_type"] = "mistral";
  j["sliding_window"] = -5;
  expect_error([&] { parse(j); }, {kOrigin, "'sliding_window'", "-5"});
}

// hf_config_json is the inverse of parse_hf_config.
TEST(HfConfig, WrittenConfigParsesBackToTheSameSpec) {
  for (const char* type : {"llama", "mistral", "qwen2"}) {
    json j = llama_config();
    j["model_type"] = type;
    j["num_hidden_layers"] = 4;
    if (std::string(type) == "mistral") j["sliding_window"] = 100;
    if (std::string(type) == "qwen2") {
      j["use_sliding_window"] = true;
      j["sliding_window"] = 50;
      j["max_window_layers"] = 1;
    }
    if (std::string(type) == "llama") {
      j["attention_bias"] = true;
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", 8.0},
                           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 128}};
    }
    const ModelSpec s = parse(j);
    const std::string text = hf_config_json(s, DType::kBF16);
    const ModelSpec back = parse_hf_config(text, "written");
    EXPECT_EQ(back.to_json(), s.to_json()) << type;
    const json w = json::parse(text);
    EXPECT_EQ(w.at("model_type"), type);
    EXPECT_EQ(w.at("torch_dtype"), "bfloat16");
    EXPECT_TRUE(w.at("architectures").is_array());
  }
}

TEST(HfConfigErrors, SpecsHfCannotExpress) {
  ModelSpec s = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 2, 64, 128);
  s.layers[1].head_dim = 4;  // config.json holds one head_dim
  expect_error([&] { hf_config_json(s); }, {"layer 1", "head_dim 4"});
  s = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 2, 64, 128);
  s.layers[1].rope_theta = 5;
  expect_error([&] { hf_config_json(s); }, {"layer 1", "rope_theta 5"});
  s = make_uniform_spec(Family::kPhi3, 100, 32, 2, 4, 2, 64, 128);
  expect_error([&] { hf_config_json(s); }, {"phi3", "not supported"});
  s = make_uniform_spec(Family::kQwen2, 100, 32, 2, 4, 2, 64, 128);
  expect_error([&] { hf_config_json(s); }, {"qwen2", "biases"});
}

// ---- the families beyond the plain Llama layout -------------------------------------------------

json with(json j, const char* key, json v) {
  j[key] = std::move(v);
  return j;
}

TEST(HfConfig, Gemma3LocalAndGlobalLayers) {
  json j = llama_config();
  j["model_type"] = "gemma3_text";
  j.erase("hidden_act");
  j["head_dim"] = 16;
  j["query_pre_attn_scalar"] = 24;
  j["sliding_window"] = 5;
  j["sliding_window_pattern"] = 3;  // layers 0, 1 local, layer 2 global
  j["rope_theta"] = 1000000.0;
  j["rope_local_base_freq"] = 10000.0;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  j["attn_logit_softcapping"] = nullptr;
  j["final_logit_softcapping"] = nullptr;
  const ModelSpec s = parse(j);
  EXPECT_EQ(s.family, Family::kGemma3);
  EXPECT_EQ(s.act, Activation::kGeluTanh);
  EXPECT_DOUBLE_EQ(s.embed_scale, 8.0);  // sqrt(64)
  EXPECT_EQ(s.rope_scaling.type, "linear");
  ASSERT_EQ(s.n_layer(), 3);
  for (int i = 0; i < 3; ++i) {
    const LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const bool global = i == 2;
    EXPECT_EQ(l.window, global ? 0 : 5) << i;
    EXPECT_DOUBLE_EQ(l.rope_theta, global ? 1e6 : 1e4) << i;
    EXPECT_EQ(l.rope_scaled, global) << i;
    EXPECT_TRUE(l.qk_norm && l.post_norms);
    EXPECT_DOUBLE_EQ(l.softmax_scale(), 1.0 / std::sqrt(24.0));
  }
  // layer_types wins over the pattern.
  j["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
  const ModelSpec t = parse(j);
  EXPECT_EQ(t.layers[0].window, 0);
  EXPECT_EQ(t.layers[2].window, 5);
  expect_error([&] { parse(with(j, "final_logit_softcapping", 30.0)); },
               {kOrigin, "'final_logit_softcapping'", "30"});
  expect_error([&] { parse(with(j, "hidden_activation", "relu")); },
               {kOrigin, "hidden_activation", "\"relu\""});
}

TEST(HfConfig, Phi3AndMixtral) {
  json j = llama_config();
  j["model_type"] = "phi3";
  j["sliding_window"] = 7;
  const ModelSpec p = parse(j);
  EXPECT_EQ(p.family, Family::kPhi3);
  EXPECT_EQ(p.layers[1].window, 7);
  expect_error([&] { parse(with(j, "rope_scaling", {{"type", "longrope"}, {"short_factor", {1.0}}})); },
               {kOrigin, "rope_scaling.type", "\"longrope\""});
  expect_error([&] { parse(with(j, "partial_rotary_factor", 0.5)); },
               {kOrigin, "'partial_rotary_factor'", "0.5"});

  j = llama_config();
  j["model_type"] = "mixtral";
  j["num_local_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  const ModelSpec m = parse(j);
  EXPECT_EQ(m.family, Family::kMixtral);
  EXPECT_EQ(m.layers[0].n_expert, 4);
  EXPECT_EQ(m.layers[0].n_expert_used, 2);
  EXPECT_EQ(m.layers[0].window, 0);
  expect_error([&] { parse(with(j, "num_experts_per_tok", 5)); },
               {kOrigin, "'num_experts_per_tok' = 5 exceeds", "num_local_experts 4"});
}

json openelm_config() {
  return json{{"model_type", "openelm"},
              {"model_dim", 64},
              {"num_transformer_layers", 3},
              {"head_dim", 16},
              {"num_query_heads", {2, 4, 4}},
              {"num_kv_heads", {1, 2, 1}},
              {"ffn_multipliers", {0.5, 1.0, 2.0}},
              {"ffn_dim_divisor", 32},
              {"normalize_qk_projections", true},
              {"share_input_output_layers", true},
              {"rope_freq_constant", 10000},
              {"max_context_length", 128},
              {"activation_fn_name", "swish"},
              {"ffn_with_glu", true},
              {"vocab_size", 100}};
}

TEST(HfConfig, OpenElmPerLayerWidths) {
  const ModelSpec s = parse(openelm_config());
  EXPECT_EQ(s.family, Family::kOpenELM);
  EXPECT_TRUE(s.tied_embeddings);
  ASSERT_EQ(s.n_layer(), 3);
  // make_divisible(mult * 64, 32): 32 -> 32, 64 -> 64, 128 -> 128.
  const int64_t heads[] = {2, 4, 4}, kv[] = {1, 2, 1}, ffn[] = {32, 64, 128};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(s.layers[i].n_head, heads[i]);
    EXPECT_EQ(s.layers[i].n_kv_head, kv[i]);
    EXPECT_EQ(s.layers[i].ffn_dim, ffn[i]);
    EXPECT_TRUE(s.layers[i].qk_norm);
    EXPECT_EQ(s.layers[i].head_dim, 16);
  }
  // make_divisible rounds to the nearest multiple and adds one when that loses > 10%.
  json j = openelm_config();
  j["ffn_multipliers"] = {0.7, 1.3, 0.1};  // 44.8 -> 32 (< 0.9 v) -> 64; 83.2 -> 96; 6.4 -> 32
  const ModelSpec t = parse(j);
  EXPECT_EQ(t.layers[0].ffn_dim, 64);
  EXPECT_EQ(t.layers[1].ffn_dim, 96);
  EXPECT_EQ(t.layers[2].ffn_dim, 32);
  j = openelm_config();
  j.erase("num_kv_heads");
  expect_error([&] { parse(j); }, {kOrigin, "'num_kv_heads'"});
  expect_error([&] { parse(with(openelm_config(), "num_query_heads", {2, 4})); },
               {kOrigin, "'num_query_heads'", "list of 3 integers"});
  expect_error([&] { parse(with(openelm_config(), "num_kv_heads", {1, 3, 1})); },
               {kOrigin, "'num_query_heads[1]' = 4", "num_kv_heads[1] = 3"});
  expect_error([&] { parse(with(openelm_config(), "ffn_multipliers", {0.5, 1e300, 2.0})); },
               {kOrigin, "ffn_multipliers[1]"});
  expect_error([&] { parse(with(openelm_config(), "ffn_with_glu", false)); },
               {kOrigin, "'ffn_with_glu'"});
}

// ---- per-layer widths (structurally pruned models) ---------------------------------------------

// num_attention_heads, num_key_value_heads and intermediate_size may each be a list of one
// integer per layer; hf_config_json writes a list exactly when the layers differ.
TEST(HfConfig, PerLayerWidthsRoundTrip) {
  for (const Family f : {Family::kLlama, Family::kMistral, Family::kQwen2}) {
    ModelSpec s = make_uniform_spec(f, 100, 32, 4, 4, 2, 64, 128);
    if (f == Family::kQwen2)
      for (LayerSpec& l : s.layers) l.attn_qkv_bias = true;
    s.layers[0].n_head = 2;  // heads pruned in layer 0 (head_dim stays 8)
    s.layers[0].n_kv_head = 1;
    s.layers[2].n_kv_head = 4;
    s.layers[1].ffn_dim = 24;
    s.layers[3].ffn_dim = 8;
    const std::string text = hf_config_json(s);
    const json w = json::parse(text);
    EXPECT_EQ(w.at("num_attention_heads"), json({2, 4, 4, 4})) << family_name(f);
    EXPECT_EQ(w.at("num_key_value_heads"), json({1, 2, 4, 2}));
    EXPECT_EQ(w.at("intermediate_size"), json({64, 24, 64, 8}));
    EXPECT_EQ(w.at("head_dim"), 8);
    const ModelSpec back = parse_hf_config(text, "written");
    EXPECT_EQ(back.to_json(), s.to_json()) << family_name(f);
  }
  // Uniform layers keep the scalars transformers reads.
  const ModelSpec u = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 2, 64, 128);
  const json w = json::parse(hf_config_json(u));
  EXPECT_EQ(w.at("num_attention_heads"), 4);
  EXPECT_EQ(w.at("intermediate_size"), 64);
}

TEST(HfConfigErrors, PerLayerWidthLists) {
  json j = llama_config();
  j["intermediate_size"] = {172, 64};  // 3 layers
  expect_error([&] { parse(j); }, {kOrigin, "'intermediate_size'", "list of 3 integers"});
  j["intermediate_size"] = {172, 64, 0};
  expect_error([&] { parse(j); }, {kOrigin, "'intermediate_size[2]' = 0 is outside"});
  j = llama_config();
  j["num_attention_heads"] = {8, 8, 4};
  j.erase("head_dim");
  expect_error([&] { parse(j); }, {kOrigin, "'head_dim' is required"});
  j["head_dim"] = 8;
  j["num_key_value_heads"] = {4, 4, 3};
  expect_error([&] { parse(j); }, {kOrigin, "num_attention_heads[2] 4", "num_key_value_heads[2] 3"});
  j["num_key_value_heads"] = {4, 4, 2};
  const ModelSpec s = parse(j);
  EXPECT_EQ(s.layers[2].n_head, 4);
  EXPECT_EQ(s.layers[2].n_kv_head, 2);
  EXPECT_EQ(s.layers[2].head_dim, 8);
}

// ---- hostile configs (issue 18): refused before anything is allocated from them ----------------

TEST(HfConfigErrors, CountsBeyondTheLimitsAreRefusedByKey) {
  json j = llama_config();
  j["num_hidden_layers"] = 30000000;
  expect_error([&] { parse(j); }, {kOrigin, "'num_hidden_layers' = 30000000 is outside [1, 4096]"});
  j["num_hidden_layers"] = 201111111111111111;
  expect_error([&] { parse(j); }, {kOrigin, "'num_hidden_layers'", "outside"});
  j["num_hidden_layers"] = 9.2e19;  // past int64: compared as a double, never converted
  expect_error([&] { parse(j); }, {kOrigin, "'num_hidden_layers'", "outside"});
  j = llama_config();
  j["vocab_size"] = int64_t{1} << 40;
  expect_error([&] { parse(j); }, {kOrigin, "'vocab_size'", "outside"});
  j = llama_config();
  j["hidden_size"] = -1;
  expect_error([&] { parse(j); }, {kOrigin, "'hidden_size' = -1"});
  j = llama_config();
  j["eos_token_id"] = {1e300};
  expect_error([&] { parse(j); }, {kOrigin, "'eos_token_id'[0]", "outside"});
  j = llama_config();
  j["model_type"] = "mixtral";
  j["num_hidden_layers"] = 4096;
  j["num_local_experts"] = 4096;
  expect_error([&] { parse(j); }, {kOrigin, "num_hidden_layers 4096 x num_local_experts 4096"});
}

TEST(HfConfigErrors, DuplicateKeysAndDeepNestingAreRefused) {
  std::string text = llama_config().dump();
  text.insert(1, "\"num_hidden_layers\": 99, ");
  expect_error([&] { parse_hf_config(text, kOrigin); }, {kOrigin, "duplicate key \"num_hidden_layers\""});
  // 400 KB of nesting: refused at depth 128, and the message quotes nothing of it.
  const std::string deep = "{\"model_type\": " + std::string(200000, '[') + std::string(200000, ']') + "}";
  try {
    parse_hf_config(deep, kOrigin);
    ADD_FAILURE() << "deep JSON accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nesting deeper than 128"), std::string::npos) << e.what();
    EXPECT_LT(std::string(e.what()).size(), 400u);
  }
  // A long value is quoted as a bounded excerpt.
  json j = llama_config();
  j["model_type"] = std::string(100000, 'x');
  try {
    parse(j);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 400u) << e.what();
  }
}

}  // namespace
}  // namespace slmc
