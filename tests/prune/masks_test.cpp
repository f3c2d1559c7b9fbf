// Mask selection: exact counts, ties, N:M groups, global thresholds; and the unit table.
#include "prune/masks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "compress/core/tensor_names.h"
#include "compress/core/units.h"
#include "prune/structured.h"
#include "tests/test_util.h"

namespace slmc::prune {
namespace {

using slmc::testing::expect_error;

TEST(Masks, CountsAreExact) {
  EXPECT_EQ(pruned_count(10, 0.3), 3);  // 0.3 * 10 is 2.9999999999999996 in double
  EXPECT_EQ(pruned_count(7, 0.5), 3);
  EXPECT_EQ(pruned_count(8, 0.0), 0);
  expect_error([] { (void)pruned_count(8, 1.0); }, {"sparsity must be in [0, 1), got 1"});
  expect_error([] { (void)pruned_count(8, -0.25); }, {"got -0.25"});
  EXPECT_EQ(removed_units(4, 0.25), 1);
  EXPECT_EQ(removed_units(5, 0.5), 3);  // half of 5 blocks: halves round up
  EXPECT_EQ(removed_units(4, 0.1), 0);
  EXPECT_EQ(removed_units(4, 0.9), 4);  // the caller refuses removing every unit
}

TEST(Masks, PerRowAndPerTensorPruneTheLowestWithTiesByPosition) {
  const torch::Tensor score = torch::tensor({{3.0f, 1.0f, 2.0f, 0.5f}, {1.0f, 1.0f, 1.0f, 1.0f}});
  const torch::Tensor row = mask_per_row(score, 0.5);
  EXPECT_TRUE(
      torch::equal(row, torch::tensor({{false, true, false, true}, {true, true, false, false}})));
  // Per tensor: the 3 lowest of 8 (0.5, then the 1.0s in row-major order).
  const torch::Tensor t = mask_per_tensor(score, 3.0 / 8.0);
  EXPECT_TRUE(
      torch::equal(t, torch::tensor({{false, true, false, true}, {true, false, false, false}})));
  EXPECT_EQ(mask_per_tensor(score, 0.0).sum().item<int64_t>(), 0);
}

TEST(Masks, NmKeepsExactlyNOfEveryM) {
  torch::manual_seed(3);
  const torch::Tensor score = torch::rand({7, 24});
  for (const auto& [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}, {1, 4}, {3, 8}, {5, 6}}) {
    const torch::Tensor mask = mask_nm(score, {n, m});
    const torch::Tensor pruned = mask.view({7, 24 / m, m}).sum(-1);
    EXPECT_TRUE(pruned.eq(m - n).all().item<bool>()) << n << ":" << m;
    // The kept weights are the group's largest: every kept score >= every pruned one.
    const torch::Tensor g = score.view({7, 24 / m, m});
    const torch::Tensor mg = mask.view({7, 24 / m, m});
    const torch::Tensor max_pruned = g.masked_fill(mg.logical_not(), -1.0f).amax(-1);
    const torch::Tensor min_kept = g.masked_fill(mg, 2.0f).amin(-1);
    EXPECT_TRUE(max_pruned.le(min_kept).all().item<bool>());
  }
  expect_error([&] { (void)mask_nm(score, {2, 5}); }, {"24 columns are not a multiple of 5"});
  expect_error([&] { (void)mask_nm(score, {4, 4}); }, {"needs 0 <= N < M"});
}

TEST(Masks, GlobalThresholdSpansTensors) {
  const torch::Tensor a = torch::tensor({{1.0f, 5.0f}, {6.0f, 7.0f}});
  const torch::Tensor b = torch::tensor({{2.0f, 3.0f, 8.0f}});
  const std::vector<torch::Tensor> m = mask_global({a, b}, 3.0 / 7.0);
  EXPECT_TRUE(torch::equal(m[0], torch::tensor({{true, false}, {false, false}})));
  EXPECT_TRUE(torch::equal(m[1], torch::tensor({{true, true, false}})));
}

TEST(Units, HeadGroupsFollowGqaAndChannelsEveryExpert) {
  ModelSpec s = make_uniform_spec(Family::kQwen2, 64, 48, 2, 6, 2, 40, 32);
  for (LayerSpec& l : s.layers) {
    l.head_dim = 8;
    l.attn_qkv_bias = true;
  }
  const std::vector<UnitSet> u = unit_sets(s, 1);
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0].kind, UnitKind::kHeads);
  EXPECT_EQ(u[0].count, 2);                                       // KV groups
  EXPECT_EQ(u[0].find(names::blk(1, names::kAttnQ))->width, 24);  // 3 query heads x 8
  EXPECT_EQ(u[0].find(names::blk(1, names::kAttnK))->width, 8);
  EXPECT_EQ(u[0].find(names::blk(1, names::kAttnVBias))->width, 8);
  EXPECT_EQ(u[0].consumer().tensor, names::blk(1, names::kAttnOut));
  EXPECT_EQ(u[0].consumer().width, 24);
  EXPECT_EQ(u[0].consumer().axis, 1);
  EXPECT_EQ(u[1].kind, UnitKind::kChannels);
  EXPECT_EQ(u[1].count, 40);
  EXPECT_EQ(u[1].consumer().tensor, names::blk(1, names::kFfnDown));
  // The folding rule reads the table: attn_v rows feed attn_output columns one to one only
  // without GQA sharing; ffn_up rows always feed ffn_down columns.
  EXPECT_FALSE(feeds_one_to_one(u[0], names::blk(1, names::kAttnV)));
  EXPECT_TRUE(feeds_one_to_one(u[1], names::blk(1, names::kFfnUp)));
  EXPECT_EQ(linear_groups(s, 1)[1].prev_linear, "");
  ModelSpec mha = make_uniform_spec(Family::kLlama, 64, 48, 1, 6, 6, 40, 32);
  EXPECT_TRUE(feeds_one_to_one(unit_sets(mha, 0)[0], names::blk(0, names::kAttnV)));
  EXPECT_EQ(linear_groups(mha, 0)[1].prev_linear, names::blk(0, names::kAttnV));

  ModelSpec moe = make_uniform_spec(Family::kMixtral, 64, 48, 1, 6, 2, 40, 32);
  moe.layers[0].n_expert = 3;
  moe.layers[0].n_expert_used = 2;
  const std::vector<UnitSet> um = unit_sets(moe, 0);
  ASSERT_EQ(um.size(), 4u);
  for (int64_t e = 0; e < 3; ++e) {
    EXPECT_EQ(um[static_cast<size_t>(1 + e)].expert, e);
    EXPECT_EQ(um[static_cast<size_t>(1 + e)].consumer().tensor,
              names::expert(0, e, names::kFfnDown));
  }
  EXPECT_EQ(um[2].name(), "blk.0 expert.1 channels");
  // Every tensor the sets span has the extent the counts imply.
  for (const UnitSet& set : unit_sets(s, 0))
    for (const UnitSlice& sl : set.slices) {
      for (const TensorDecl& d : expected_tensors(s)) {
        if (d.name == sl.tensor) {
          EXPECT_EQ(d.shape[static_cast<size_t>(sl.axis)], set.count * sl.width) << sl.tensor;
        }
      }
    }
}

}  // namespace
}  // namespace slmc::prune
