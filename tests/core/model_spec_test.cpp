#include "compress/core/model_spec.h"

#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

TEST(ModelSpec, JsonRoundTrip) {
  ModelSpec s = make_uniform_spec(Family::kQwen2, 100, 32, 3, 4, 2, 48, 64, 500000.0);
  s.layers[1].window = 16;
  s.layers[2].attn_qkv_bias = true;
  s.rope_scaling.type = "llama3";
  s.rope_scaling.factor = 8;
  s.tied_embeddings = true;
  const ModelSpec t = ModelSpec::from_json(s.to_json(), "test");
  EXPECT_EQ(t.to_json(), s.to_json());
  EXPECT_EQ(t.family, Family::kQwen2);
  EXPECT_EQ(t.layers[1].window, 16);
}

TEST(ModelSpec, RejectsInconsistentHeads) {
  ModelSpec s = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 3, 48, 64);
  try {
    s.validate();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_kv_head 3"), std::string::npos) << e.what();
  }
}

TEST(ModelSpec, ParamCountMatchesTensorTable) {
  ModelSpec s = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 2, 48, 64);
  s.layers[0].attn_qkv_bias = true;
  int64_t n = 0;
  for (const TensorDecl& t : expected_tensors(s)) n += shape_numel(t.shape);
  EXPECT_EQ(n, s.n_params());
  s.tied_embeddings = true;
  n = 0;
  for (const TensorDecl& t : expected_tensors(s)) n += shape_numel(t.shape);
  EXPECT_EQ(n, s.n_params());
}

TEST(ModelSpec, CheckTensorsNamesTheMismatch) {
  ModelSpec s = make_uniform_spec(Family::kLlama, 10, 8, 1, 2, 2, 16, 16);
  TensorMap m;
  for (const TensorDecl& t : expected_tensors(s)) {
    HostTensor h;
    h.shape = t.shape;
    h.data.assign(static_cast<size_t>(shape_numel(t.shape)), 0.f);
    m[t.name] = h;
  }
  EXPECT_NO_THROW(check_tensors(s, m, "x"));
  m["blk.0.ffn_up.weight"].shape = {15, 8};
  try {
    check_tensors(s, m, "model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_up.weight has shape [15, 8]"),
              std::string::npos)
        << e.what();
  }
}

using testing::error_of;

// SpecLimits: what any file may declare. validate() enforces them, so the tables built from a
// validated spec are bounded.
TEST(ModelSpec, LimitsAreEnforced) {
  using L = SpecLimits;
  ModelSpec s = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 2, 48, 64);
  EXPECT_NO_THROW(s.validate());
  ModelSpec t = s;
  t.vocab = L::kMaxVocab + 1;
  EXPECT_NE(error_of([&] { t.validate(); }).find("vocab 16777217 is outside [1, 16777216]"), std::string::npos);
  t = s;
  t.d_model = L::kMaxDim * 2;
  EXPECT_NE(error_of([&] { t.validate(); }).find("d_model"), std::string::npos);
  t = s;
  t.layers.assign(L::kMaxLayers + 1, s.layers[0]);
  EXPECT_NE(error_of([&] { t.validate(); }).find("4097 layers (at most 4096)"), std::string::npos);
  t = s;
  t.layers[1].ffn_dim = int64_t{1} << 40;
  EXPECT_NE(error_of([&] { t.validate(); }).find("ffn_dim 1099511627776"), std::string::npos);
  t = s;
  t.layers[0].n_head = 1 << 19;  // x head_dim 8 > 2^20
  t.layers[0].n_kv_head = 1;
  EXPECT_NE(error_of([&] { t.validate(); }).find("n_head 524288 x head_dim 8"), std::string::npos);
  t = s;
  t.max_seq = int64_t{1} << 40;
  EXPECT_NE(error_of([&] { t.validate(); }).find("max_seq"), std::string::npos);
  t = s;
  t.bos_id = -7;
  EXPECT_NE(error_of([&] { t.validate(); }).find("bos_id -7"), std::string::npos);
  t = s;
  t.layers[0].rope_theta = std::numeric_limits<double>::infinity();
  EXPECT_NE(error_of([&] { t.validate(); }).find("rope_theta inf"), std::string::npos);
  // Layers x experts: bounded through the tensor count.
  t = make_uniform_spec(Family::kMixtral, 100, 32, 1500, 4, 2, 48, 64);
  for (LayerSpec& l : t.layers) {
    l.n_expert = 4096;
    l.n_expert_used = 2;
  }
  EXPECT_NE(error_of([&] { t.validate(); })
                .find("key 'layers' holds 1500 layers with n_expert up to 4096: they imply at least 12294002 tensors (at most 1048576)"),
            std::string::npos)
      << error_of([&] { t.validate(); });
  // The weight count is bounded, so n_params() cannot overflow.
  t = make_uniform_spec(Family::kMixtral, L::kMaxVocab, L::kMaxDim, 64, 4, 2, L::kMaxDim, 64);
  for (LayerSpec& l : t.layers) {
    l.head_dim = 1 << 18;
    l.n_expert = 64;
    l.n_expert_used = 2;
  }
  EXPECT_NE(error_of([&] { t.validate(); }).find("weights (at most 1e+15)"), std::string::npos)
      << error_of([&] { t.validate(); });
}

// min_tensor_count() is a lower bound of every family's tensor table (readers rely on it).
TEST(ModelSpec, MinTensorCountBoundsTheTable) {
  for (const Family f : {Family::kLlama, Family::kQwen2, Family::kGemma3, Family::kMixtral,
                         Family::kPhi3, Family::kOpenELM}) {
    for (const bool tied : {false, true}) {
      ModelSpec s = make_uniform_spec(f, 100, 32, 3, 4, 2, 48, 64);
      s.tied_embeddings = tied;
      if (f == Family::kMixtral)
        for (LayerSpec& l : s.layers) {
          l.n_expert = 5;
          l.n_expert_used = 2;
        }
      if (f == Family::kGemma3)
        for (LayerSpec& l : s.layers) l.qk_norm = l.post_norms = true;
      s.validate();
      EXPECT_LE(s.min_tensor_count(), static_cast<int64_t>(expected_tensors(s).size())) << family_name(f);
    }
  }
}

// The spec JSON of an .slm file: integers are checked before any conversion (9.2e19 used to hit
// a float-to-int conversion with undefined behaviour), errors name the key path.
TEST(ModelSpec, FromJsonChecksEveryValueByKey) {
  const std::string good = make_uniform_spec(Family::kLlama, 100, 32, 2, 4, 2, 48, 64).to_json();
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string j = good;
    const size_t at = j.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) j.replace(at, from.size(), to);
    return error_of([&] { ModelSpec::from_json(j, "m.slm: spec"); });
  };
  EXPECT_NE(with("\"vocab\":100", "\"vocab\":9.2e19").find("m.slm: spec: key 'vocab' = 9.2e+19 is outside"),
            std::string::npos);
  EXPECT_NE(with("\"d_model\":32", "\"d_model\":-1").find("key 'd_model' = -1"), std::string::npos);
  EXPECT_NE(with("\"n_head\":4", "\"n_head\":4.5").find("key 'layers[0].n_head' = 4.5 is not an integer"),
            std::string::npos);
  EXPECT_NE(with("\"norm_eps\":1e-05", "\"norm_eps\":\"small\"").find("key 'norm_eps' must be a number"),
            std::string::npos)
      << good;
  EXPECT_NE(with("\"vocab\":100", "\"vocab\":100,\"vocab\":5").find("duplicate key \"vocab\""),
            std::string::npos);
  EXPECT_NE(with("\"layers\":[", "\"layers\":7,\"x\":[").find("key 'layers' must be a list"),
            std::string::npos);
  EXPECT_NE(with("\"family\":\"llama\"", "\"family\":\"lemur\"").find("unknown family \"lemur\""),
            std::string::npos);
  EXPECT_NE(with("\"rope_scaling\":{", "\"rope_scaling\":[],\"y\":{").find("key 'rope_scaling' must be an object"),
            std::string::npos);
}

}  // namespace
}  // namespace slmc
