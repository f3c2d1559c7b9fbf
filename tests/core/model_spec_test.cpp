#include "compress/core/model_spec.h"

#include <gtest/gtest.h>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"

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

}  // namespace
}  // namespace slmc
