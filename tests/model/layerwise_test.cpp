// The layer-wise calibration driver (compress/model/layerwise.h) against the same quantities
// computed directly: H, column norms and samples of every group from one full forward of the
// unchanged model; D from the two streams after a method changed a block; true-sequential stages
// seeing the blocks compressed before them; errors naming the linear; MoE coverage.
#include "compress/model/layerwise.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <random>

#include "compress/core/tensor_names.h"
#include "tests/model/random_tensors.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using slmc::testing::random_tensors;

CalibrationSet calib(int64_t vocab, int64_t rows, int64_t len) {
  std::mt19937 rng(4);
  CalibrationSet c;
  c.origin = "calib";
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> row = {1};
    for (int64_t t = 1; t < len; ++t) row.push_back(static_cast<int32_t>(rng() % vocab));
    c.rows.push_back(row);
  }
  return c;
}

// Records what it is given; optionally scales one linear when its stage comes.
struct Recorder : LayerwiseMethod {
  GroupRequest rq;
  std::map<std::string, GroupStats> seen;  // "layer/group"
  std::vector<std::string> order;          // stages as "layer:group,group"
  std::string scale;                       // linear to multiply by 2 in compress
  std::optional<GroupRequest> request(int64_t, const LinearGroup&) const override { return rq; }
  void compress(const LayerStage& st, StageStats& stats, Transformer& tf) override {
    std::string s = str_cat(st.layer, ":");
    for (const LinearGroup& g : st.groups) {
      s += g.name + ",";
      auto it = stats.find(g.name);
      if (it != stats.end()) seen[str_cat(st.layer, "/", g.name)] = it->second;
      for (const std::string& m : g.members)
        if (m == scale) tf.params().at(m).mul_(2.0f);
    }
    order.push_back(s);
  }
};

TEST(Layerwise, StatsEqualOneFullForward) {
  torch::NoGradGuard ng;
  const ModelSpec s = make_uniform_spec(Family::kLlama, 50, 32, 2, 4, 2, 48, 64);
  const TensorMap t = random_tensors(s, 1);
  const CalibrationSet cal = calib(50, 5, 12);
  Transformer tf(s, t);
  Recorder r;
  r.rq.col_sq = true;
  r.rq.sample_stride = 7;
  LayerwiseOptions o;
  o.batch = 2;  // chunks of 2, 2, 1 sequences
  run_layerwise(tf, cal, r, o);
  // The same sums from hooks on full forwards of the unchanged model, chunk by chunk.
  Transformer ref(s, t);
  std::map<std::string, torch::Tensor> H;
  ref.set_linear_hook([&](const std::string& name, const torch::Tensor& x, const torch::Tensor&) {
    const torch::Tensor x2 = x.reshape({-1, x.size(-1)});
    torch::Tensor& h = H[name];
    h = h.defined() ? h + x2.t().mm(x2) : x2.t().mm(x2);
  });
  const torch::Tensor tokens = calibration_tokens(cal, 5);
  for (int64_t c = 0; c < 5; c += 2)
    (void)ref.forward(tokens.narrow(0, c, std::min<int64_t>(2, 5 - c)));
  for (int64_t i = 0; i < 2; ++i)
    for (const LinearGroup& g : linear_groups(s, i)) {
      const GroupStats& st = r.seen.at(str_cat(i, "/", g.name));
      EXPECT_EQ(st.rows, 60) << g.name;
      EXPECT_TRUE(torch::allclose(st.H, H.at(g.members[0]), 1e-5, 1e-6)) << i << " " << g.name;
      EXPECT_TRUE(torch::allclose(st.col_sq, st.H.diagonal(), 1e-5, 1e-6)) << g.name;
      int64_t sampled = 0;
      for (const torch::Tensor& x : st.samples) sampled += x.size(0);
      EXPECT_EQ(sampled, 4 + 4 + 2);  // every 7th row of chunks of 24, 24 and 12 rows
    }
  const GroupStats& head = r.seen.at("-1/head");
  EXPECT_TRUE(torch::allclose(head.H, H.at(names::kOutput), 1e-5, 1e-6));
  EXPECT_EQ(r.order.front(), "0:attn_in,attn_out,ffn_in,ffn_out,");
  EXPECT_EQ(r.order.back(), "-1:head,");
}

// After block 0 was changed, block 1's paired groups see D = (xf - x)^T x with xf from the
// unchanged model and x from the changed one; sequential stages see earlier stages' changes.
TEST(Layerwise, SecondStreamAndSequentialStages) {
  torch::NoGradGuard ng;
  const ModelSpec s = make_uniform_spec(Family::kLlama, 50, 32, 2, 4, 4, 48, 64);
  const TensorMap t = random_tensors(s, 2);
  const CalibrationSet cal = calib(50, 3, 10);
  Recorder r;
  r.rq.pair = true;
  r.scale = names::blk(0, names::kFfnDown);
  LayerwiseOptions o;
  o.second_stream = true;
  o.sequential = true;
  {
    Transformer tf(s, t);
    run_layerwise(tf, cal, r, o);
  }
  EXPECT_EQ(r.order[0], "0:attn_in,");
  EXPECT_EQ(r.order[3], "0:ffn_out,");
  Transformer orig(s, t);
  Transformer changed(s, t);
  changed.params().at(names::blk(0, names::kFfnDown)).mul_(2.0f);
  const torch::Tensor tokens = calibration_tokens(cal, 3);
  const torch::Tensor xf = orig.layer(0, orig.embed(tokens));
  const torch::Tensor x = changed.layer(0, changed.embed(tokens));
  // attn_in of block 1 reads attn_norm(x): recompute it on both streams.
  auto normed = [&](const torch::Tensor& v) {
    const torch::Tensor w = orig.params().at(names::blk(1, names::kAttnNorm));
    return (v * torch::rsqrt(v.pow(2).mean(-1, true) + s.norm_eps) * w).reshape({-1, 32});
  };
  const torch::Tensor a = normed(x), af = normed(xf);
  const GroupStats& st = r.seen.at("1/attn_in");
  EXPECT_TRUE(torch::allclose(st.H, a.t().mm(a), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(st.D, (af - a).t().mm(a), 1e-4, 1e-5));
  // Block 0's D is zero: both streams start from the same embedding and block 0's first stage
  // runs before anything changed.
  EXPECT_EQ(r.seen.at("0/attn_in").D.abs().max().item<float>(), 0.0f);
}

TEST(Layerwise, NonFiniteActivationNamesTheLinearAndExpertsAreCounted) {
  const ModelSpec s = make_uniform_spec(Family::kLlama, 50, 32, 2, 4, 2, 48, 64);
  TensorMap t = random_tensors(s, 3);
  t.at(names::blk(1, names::kFfnNorm)).data[3] = NAN;
  Transformer tf(s, t);
  Recorder r;
  slmc::testing::expect_error(
      [&] { run_layerwise(tf, calib(50, 2, 8), r, LayerwiseOptions{}); },
      {"calib: non-finite activation at the input of blk.1.ffn_gate.weight (layer 1)"});

  ModelSpec moe = make_uniform_spec(Family::kMixtral, 50, 32, 1, 4, 2, 48, 64);
  moe.layers[0].n_expert = 4;
  moe.layers[0].n_expert_used = 1;
  Transformer tm(moe, random_tensors(moe, 4));
  struct Coverage : Recorder {
    std::string note;
    const ModelSpec* spec = nullptr;
    void compress(const LayerStage& st, StageStats& stats, Transformer& tf) override {
      if (st.layer == 0) note = expert_coverage_note(*spec, st, stats, 20, "below 20: ");
      Recorder::compress(st, stats, tf);
    }
  } c;
  c.spec = &moe;
  run_layerwise(tm, calib(50, 4, 10), c, LayerwiseOptions{});
  int64_t routed = 0;
  for (int64_t e = 0; e < 4; ++e) {
    auto it = c.seen.find(str_cat("0/expert.", e, ".ffn_in"));
    routed += it == c.seen.end() ? 0 : it->second.rows;
  }
  EXPECT_EQ(routed, 40);  // top-1 of 4: every token reaches exactly one expert
  EXPECT_NE(c.note.find("blk.0 calibration tokens per expert (top-1 of 4): ["), std::string::npos)
      << c.note;
}

}  // namespace
}  // namespace slmc
