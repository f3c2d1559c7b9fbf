// The prune pass on small in-memory models: exact sparsity and masks for every method and
// pattern, masks surviving every quantization method, structured removal that leaves the
// function unchanged when the removed units contribute nothing, depth pruning, MoE, bad options
// naming key and value, and the runner's plan validating each stage against the one before.
#include "prune/prune_pass.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/model/host_torch.h"
#include "compress/model/transformer.h"
#include "compress/recipe/runner.h"
#include "prune/masks.h"
#include "prune/structured.h"
#include "quantize/gptq.h"
#include "quantize/quantize_pass.h"
#include "tests/recipe/tiny_model.h"
#include "tests/test_util.h"

namespace slmc::prune {
namespace {

using slmc::testing::error_of;
using slmc::testing::random_calibration;
using slmc::testing::tiny_model;

std::unique_ptr<Pass> pass(const std::string& kind, const std::string& yaml) {
  register_prune_pass();
  quant::register_quantize_pass();
  return make_pass(kind, "t.yaml", YAML::Load(yaml), "t.yaml:1");
}

// Runs a YAML pass through run_pass (which holds it to its contract: spec, tensors, masks).
PassReport run(CompressedModel& m, const std::string& kind, const std::string& yaml,
               const CalibrationSet* cal) {
  PassContext ctx;
  ctx.calibration = cal;
  return run_pass(*pass(kind, yaml), m, ctx);
}

// Logits of `m` on fixed random tokens.
torch::Tensor logits(const CompressedModel& m) {
  torch::NoGradGuard ng;
  const Transformer tf(m.model.spec, m.model.tensors);
  torch::manual_seed(5);
  return tf.forward(torch::randint(2, m.model.spec.vocab, {2, 24}, torch::kInt64));
}

struct Case {
  const char* name;
  const char* yaml;
  int64_t n, m;  // pattern, 0:0 unstructured
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Unstructured : public ::testing::TestWithParam<Case> {};

// Every target is pruned to exactly the asked sparsity (N:M: exactly m - n of every group), the
// mask says which, the report counts them, and nothing outside the targets moves.
TEST_P(Unstructured, ExactSparsityAndMasks) {
  CompressedModel m = tiny_model(64, 128, 96, 2, true);
  const CompressedModel before = m;
  const CalibrationSet cal = random_calibration(96, 6, 32);
  const PassReport r = run(m, "prune", GetParam().yaml, &cal);
  const int64_t n = GetParam().n, gm = GetParam().m;
  int64_t pruned_tensors = 0, total = 0, weights = 0;
  const bool global = std::string(GetParam().name).find("global") != std::string::npos;
  for (const TensorDecl& d : expected_tensors(m.model.spec)) {
    const bool target = d.is_linear && d.name.rfind("blk.", 0) == 0;
    if (!target) {
      EXPECT_EQ(m.model.tensors.at(d.name).data, before.model.tensors.at(d.name).data) << d.name;
      EXPECT_EQ(m.masks.count(d.name), 0u);
      continue;
    }
    ++pruned_tensors;
    ASSERT_TRUE(m.masks.count(d.name)) << d.name;
    const SparsityMask& mk = m.masks.at(d.name);
    EXPECT_EQ(mk.n, n);
    EXPECT_EQ(mk.m, gm);
    if (!global) {
      EXPECT_EQ(mk.n_pruned(), d.shape[0] * d.shape[1] / 2) << d.name;
    }
    total += mk.n_pruned();
    weights += d.shape[0] * d.shape[1];
    const torch::Tensor mask = bool_tensor(mk.shape, mk.pruned);
    const torch::Tensor w = to_torch(m.model.tensors.at(d.name));
    EXPECT_EQ(w.masked_select(mask).abs().max().item<float>(), 0.0f);
    if (gm > 0) {
      EXPECT_TRUE(
          mask.view({d.shape[0], d.shape[1] / gm, gm}).sum(-1).eq(gm - n).all().item<bool>());
    }
  }
  EXPECT_EQ(static_cast<int64_t>(r.tensors.size()), pruned_tensors);
  EXPECT_EQ(total, weights / 2);  // global: over all targets at once
  for (const TensorReport& t : r.tensors)
    if (!global) {
      EXPECT_DOUBLE_EQ(t.sparsity(), 0.5) << t.name;
    }
  EXPECT_EQ(r.params_after, r.params_before);
  EXPECT_GT(r.model_zero, 0);
}

INSTANTIATE_TEST_SUITE_P(
    All, Unstructured,
    ::testing::Values(Case{"magnitude", "{method: magnitude, sparsity: 0.5}", 0, 0},
                      Case{"magnitude_global", "{method: magnitude, sparsity: 0.5, scope: global}",
                           0, 0},
                      Case{"wanda", "{method: wanda, sparsity: 0.5}", 0, 0},
                      Case{"sparsegpt", "{method: sparsegpt, sparsity: 0.5, block_size: 32}", 0, 0},
                      Case{"magnitude_2of4", "{method: magnitude, pattern: '2:4'}", 2, 4},
                      Case{"wanda_2of4", "{method: wanda, pattern: '2:4'}", 2, 4},
                      Case{"sparsegpt_2of4", "{method: sparsegpt, pattern: '2:4'}", 2, 4},
                      Case{"wanda_4of8", "{method: wanda, pattern: '4:8', sparsity: 0.5}", 4, 8},
                      Case{"sparsegpt_4of8", "{method: sparsegpt, pattern: '4:8'}", 4, 8}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// With outlier input channels (norm weights spread over decades, as in real models), Wanda's
// activation-aware choice and SparseGPT's updates beat magnitude on the model's outputs.
TEST(PrunePass, CalibratedMethodsBeatMagnitude) {
  const CalibrationSet cal = random_calibration(96, 8, 32);
  auto kl = [&](const char* yaml) {
    CompressedModel m = tiny_model(64, 128, 96, 2, true, 21);
    torch::manual_seed(6);
    for (auto& [name, t] : m.model.tensors)
      if (name.find("norm") != std::string::npos) {
        const torch::Tensor f =
            torch::exp(1.5 * torch::randn({static_cast<int64_t>(t.data.size())}));
        for (size_t i = 0; i < t.data.size(); ++i)
          t.data[i] *= f[static_cast<int64_t>(i)].item<float>();
      }
    const torch::Tensor ref = torch::log_softmax(logits(m), -1);
    run(m, "prune", yaml, &cal);
    const torch::Tensor lp = torch::log_softmax(logits(m), -1);
    return (ref.exp() * (ref - lp)).sum(-1).mean().item<double>();
  };
  const double mag = kl("{method: magnitude, sparsity: 0.5}");
  const double sgpt = kl("{method: sparsegpt, sparsity: 0.5}");
  const double wanda = kl("{method: wanda, sparsity: 0.5}");
  EXPECT_LT(sgpt, mag);
  EXPECT_LT(wanda, mag);
}

class MasksSurvive : public ::testing::TestWithParam<const char*> {};

// A 2:4 model quantized by every method keeps every pruned weight exactly zero in the stored
// bytes (run_pass checks the decoded bytes too), and every group keeps 2 zeros.
TEST_P(MasksSurvive, QuantizationKeepsTheZeros) {
  CompressedModel m = tiny_model(64, 128, 96, 2, false, 9);
  const CalibrationSet cal = random_calibration(96, 4, 32);
  run(m, "prune", "{method: wanda, pattern: '2:4'}", &cal);
  const PassReport q = run(m, "quantize", GetParam(), &cal);
  int64_t checked = 0;
  for (const auto& [name, mk] : m.masks) {
    ASSERT_TRUE(m.packed.count(name)) << name;
    const codec::QTensor& qt = m.packed.at(name);
    const std::vector<float> dec =
        codec::dequantize_ref(qt.format, qt.bytes.data(), qt.shape[0], qt.shape[1]);
    for (size_t i = 0; i < dec.size(); ++i)
      if (mk.pruned[i]) {
        ASSERT_EQ(dec[i], 0.0f) << name << " at " << i;
        ++checked;
      }
    const torch::Tensor zeros =
        torch::from_blob(const_cast<float*>(dec.data()), {qt.shape[0] * qt.shape[1] / 4, 4}).eq(0);
    EXPECT_TRUE(zeros.sum(-1).ge(2).all().item<bool>()) << name;
  }
  EXPECT_GT(checked, 0);
  for (const TensorReport& t : q.tensors)
    if (m.masks.count(t.name)) {
      EXPECT_GE(t.sparsity(), 0.5) << t.name;
      EXPECT_NE(t.note.find("pruned 2:4: zeros kept"), std::string::npos) << t.note;
    }
}

INSTANTIATE_TEST_SUITE_P(
    All, MasksSurvive,
    ::testing::Values(
        "{method: rtn, bits: 4}", "{method: rtn, bits: 8}",
        "{method: rtn, bits: 4, group_size: 64}",
        "{method: rtn, bits: 4, group_size: 64, per_channel: true}", "{method: gptq, bits: 4}",
        "{method: gptq, bits: 4, group_size: 64}", "{method: gptq, bits: 8, true_sequential: true}",
        "{method: awq, bits: 4}",
        "{method: gptq, target_bpw: 4.5, sens_samples: 2, mix_formats: 'q4_0,q8_0'}"));

// GPTQ spreads a pinned weight's error over the other columns (SparseGPT with a fixed mask): on
// correlated inputs its output error is below quantizing with GPTQ and zeroing the pruned
// weights afterwards, and the pinned weights are stored as exact zeros.
TEST(PrunePass, GptqPinsBeatZeroingAfterwards) {
  torch::manual_seed(12);
  const int64_t rows = 64, cols = 256;
  const torch::Tensor low = torch::randn({2048, 8}).mm(torch::randn({8, cols}));
  const torch::Tensor X =
      (torch::randn({2048, cols}) + low) * torch::exp(0.8 * torch::randn({cols}));
  const torch::Tensor H = X.t().mm(X);
  const torch::Tensor W = 0.02 * torch::randn({rows, cols});
  const torch::Tensor mask = mask_per_row(W.abs(), 0.5);
  const torch::Tensor Wp = W.masked_fill(mask, 0.0f);
  quant::GptqOptions o;
  const quant::QuantResult pinned = quant::gptq_quantize(Wp, H, codec::Format::kQ4_0, o, mask);
  const torch::Tensor zeroed =
      quant::gptq_quantize(Wp, H, codec::Format::kQ4_0, o).dequant.masked_fill(mask, 0.0f);
  auto err = [&](const torch::Tensor& q) {
    const torch::Tensor d = (W - q).to(torch::kFloat64);
    return (d.mm(H.to(torch::kFloat64)) * d).sum().item<double>();
  };
  EXPECT_EQ(pinned.dequant.masked_select(mask).abs().max().item<float>(), 0.0f);
  EXPECT_LT(err(pinned.dequant), err(zeroed));
}

// Pruning after quantization, or a format whose grids cannot hold zero, is refused.
TEST(PrunePass, OrderIsValidatedBeforeAnyWork) {
  CompressedModel m = tiny_model(64, 128, 96, 2, true);
  auto q = pass("quantize", "{method: rtn, bits: 4}");
  auto p = pass("prune", "{method: magnitude, sparsity: 0.5}");
  RunInput in;
  in.stages = {{q.get(), "r.yaml:5"}, {p.get(), "r.yaml:6"}};
  ExportSpec e;
  e.path = "x.slm";
  in.exports = {e};
  const std::string err = error_of([&] { (void)plan_run(m.model.spec, in); });
  EXPECT_NE(err.find("r.yaml:6: stage 'prune' rewrites weights, but the stage at r.yaml:5 "
                     "('quantize') already stored them quantized"),
            std::string::npos)
      << err;
  // The prune pass itself refuses packed tensors when run directly.
  PassContext ctx;
  run_pass(*q, m, ctx);
  EXPECT_NE(error_of([&] { p->run(m, ctx); }).find("is already quantized; prune before quantize"),
            std::string::npos);
}

// The runner validates stage k+1 against stage k's output spec: a quantize stage whose explicit
// group size fits the original ffn width but not the pruned one fails before anything runs.
TEST(PrunePass, PlanChecksEachStageAgainstThePreviousOutput) {
  const CompressedModel m = tiny_model(64, 128, 96, 2, true);
  auto p = pass("prune", "{structured: channels, sparsity: 0.3, multiple: 1, importance: weights}");
  auto q = pass("quantize", "{method: rtn, bits: 4, group_size: 32}");
  RunInput in;
  in.stages = {{p.get(), "r.yaml:5"}, {q.get(), "r.yaml:6"}};
  ExportSpec e;
  e.path = "x.slm";
  in.exports = {e};
  const std::string err = error_of([&] { (void)plan_run(m.model.spec, in); });
  EXPECT_NE(err.find("group_size 32 does not divide the 90 columns of blk.0.ffn_down.weight"),
            std::string::npos)
      << err;
  // The same quantize stage fits the unpruned model, and a multiple of 32 keeps it fitting.
  in.stages = {{q.get(), "r.yaml:6"}};
  EXPECT_NO_THROW((void)plan_run(m.model.spec, in));
  auto p32 = pass("prune", "{structured: channels, sparsity: 0.25, importance: weights}");
  in.stages = {{p32.get(), "r.yaml:5"}, {q.get(), "r.yaml:6"}};
  const std::vector<StagePlan> plan = plan_run(m.model.spec, in);
  EXPECT_EQ(plan[0].out.layers[0].ffn_dim, 96);  // 128 - 32 is a multiple of 32
}

// An HF export is checked against the final spec before any work (hf_config_json of it). Since
// config.json carries per-layer widths as lists, blocks of different widths (targets on one block)
// are written too: the plan passes and the config.json of its final spec reads back to it.
TEST(PrunePass, PlanChecksTheHfExportAgainstTheFinalSpec) {
  const CompressedModel m = tiny_model(64, 128, 96, 2, true);
  auto uniform = pass("prune", "{structured: channels, sparsity: 0.25, importance: weights}");
  auto one_block = pass("prune",
                        "{structured: channels, sparsity: 0.25, importance: weights, "
                        "targets: [\"re:blk\\\\.0\\\\..*\"]}");
  RunInput in;
  ExportSpec e;
  e.format = "hf";
  e.path = "pruned_hf";
  e.where = "--save-hf";
  in.exports = {e};
  in.stages = {{uniform.get(), "r.yaml:5"}};
  EXPECT_NO_THROW((void)plan_run(m.model.spec, in));
  in.stages = {{one_block.get(), "r.yaml:5"}};
  const std::vector<StagePlan> plan = plan_run(m.model.spec, in);
  const ModelSpec& out = plan.back().out;
  ASSERT_EQ(out.layers.size(), 2u);
  EXPECT_EQ(out.layers[0].ffn_dim, 96);
  EXPECT_EQ(out.layers[1].ffn_dim, 128);
  const ModelSpec back = parse_hf_config(hf_config_json(out), "config.json");
  EXPECT_EQ(back.layers[0].ffn_dim, 96);
  EXPECT_EQ(back.layers[1].ffn_dim, 128);
}

// Units whose consumer columns are zero contribute nothing: removing them (chosen by either
// importance) must leave the logits unchanged, and the spec holds the new widths.
class Structured : public ::testing::TestWithParam<const char*> {};

TEST_P(Structured, RemovingDeadUnitsKeepsTheFunction) {
  const std::string importance = GetParam();
  const CalibrationSet cal = random_calibration(96, 6, 32);
  {  // heads: KV group 1 (query heads 2 and 3, attn_output columns 32..63) is silent
    CompressedModel m = tiny_model(64, 128, 96, 2, false, 17);
    for (int64_t i = 0; i < 2; ++i) {
      HostTensor& o = m.model.tensors.at(names::blk(i, names::kAttnOut));
      for (int64_t r = 0; r < 64; ++r)
        for (int64_t c = 32; c < 64; ++c) o.data[static_cast<size_t>(r * 64 + c)] = 0.0f;
    }
    const torch::Tensor ref = logits(m);
    const PassReport r =
        run(m, "prune", "{structured: heads, sparsity: 0.5, importance: " + importance + "}", &cal);
    for (const LayerSpec& l : m.model.spec.layers) {
      EXPECT_EQ(l.n_head, 2);
      EXPECT_EQ(l.n_kv_head, 1);
    }
    EXPECT_EQ(m.model.tensors.at(names::blk(0, names::kAttnQ)).shape,
              (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(m.model.tensors.at(names::blk(1, names::kAttnK)).shape,
              (std::vector<int64_t>{16, 64}));
    EXPECT_EQ(m.model.tensors.at(names::blk(1, names::kAttnOut)).shape,
              (std::vector<int64_t>{64, 32}));
    EXPECT_LT((logits(m) - ref).abs().max().item<float>(), 1e-5f);
    EXPECT_LT(r.params_after, r.params_before);
  }
  {  // channels: 0..31 of 128 are silent (ffn_down columns zero)
    CompressedModel m = tiny_model(64, 128, 96, 2, true, 19);
    for (int64_t i = 0; i < 2; ++i) {
      HostTensor& d = m.model.tensors.at(names::blk(i, names::kFfnDown));
      for (int64_t r = 0; r < 64; ++r)
        for (int64_t c = 0; c < 32; ++c) d.data[static_cast<size_t>(r * 128 + c)] = 0.0f;
    }
    const torch::Tensor ref = logits(m);
    run(m, "prune", "{structured: channels, sparsity: 0.25, importance: " + importance + "}", &cal);
    for (const LayerSpec& l : m.model.spec.layers) EXPECT_EQ(l.ffn_dim, 96);
    EXPECT_EQ(m.model.tensors.at(names::blk(0, names::kFfnGate)).shape,
              (std::vector<int64_t>{96, 64}));
    EXPECT_LT((logits(m) - ref).abs().max().item<float>(), 1e-5f);
  }
}

INSTANTIATE_TEST_SUITE_P(All, Structured, ::testing::Values("activations", "weights"));

// Refitting the consumer on the kept units is the least-squares solution on the calibration
// inputs: its output error there is below cutting the columns alone, removed columns are zero,
// and without correlation between inputs (diagonal H) it changes nothing but the cut.
TEST(PrunePass, ReconstructionIsTheLeastSquaresRefit) {
  torch::manual_seed(14);
  const int64_t d = 48, n = 96;
  const torch::Tensor X =
      (torch::randn({1024, n}) + torch::randn({1024, 6}).mm(torch::randn({6, n}))) *
      torch::exp(0.5 * torch::randn({n}));
  const torch::Tensor H = X.t().mm(X);
  const torch::Tensor W = 0.05 * torch::randn({d, n});
  torch::Tensor cols = torch::zeros({n}, torch::kBool);
  cols.narrow(0, 10, 30).fill_(true);
  const torch::Tensor refit = reconstruct_consumer(W, H, cols, 1e-6);
  const torch::Tensor cut = W.masked_fill(cols.unsqueeze(0), 0.0f);
  auto err = [&](const torch::Tensor& w) {
    return (X.mm((W - w).t())).pow(2).sum().item<double>();
  };
  EXPECT_LT(err(refit), 0.7 * err(cut));
  EXPECT_EQ(refit.masked_select(cols.unsqueeze(0).expand({d, n})).abs().max().item<float>(), 0.0f);
  // Any other W'_K is worse: perturbing the refit raises the error.
  const torch::Tensor other =
      refit + 1e-3 * torch::randn({d, n}).masked_fill(cols.unsqueeze(0), 0.0f);
  EXPECT_LT(err(refit), err(other));
  const torch::Tensor diag = torch::diag(torch::exp(torch::randn({n})));
  EXPECT_TRUE(torch::allclose(reconstruct_consumer(W, diag, cols, 1e-6), cut, 0, 1e-7));
}

class Depth : public ::testing::TestWithParam<const char*> {};

// A block whose attention and MLP outputs are zero is the identity: either metric picks it, and
// removing it (with renumbering) leaves the logits unchanged.
TEST_P(Depth, RemovesTheIdentityBlock) {
  CompressedModel m = tiny_model(64, 128, 96, 3, true, 29);
  for (const char* t : {names::kAttnOut, names::kFfnDown})
    for (float& v : m.model.tensors.at(names::blk(1, t)).data) v = 0.0f;
  const torch::Tensor ref = logits(m);
  const std::vector<float> blk2_q = m.model.tensors.at(names::blk(2, names::kAttnQ)).data;
  const CalibrationSet cal = random_calibration(96, 6, 32);
  const PassReport r = run(
      m, "prune",
      std::string("{structured: layers, sparsity: 0.34, layer_metric: ") + GetParam() + "}", &cal);
  EXPECT_EQ(m.model.spec.n_layer(), 2);
  EXPECT_EQ(m.model.tensors.at(names::blk(1, names::kAttnQ)).data, blk2_q);  // renumbered
  EXPECT_LT((logits(m) - ref).abs().max().item<float>(), 1e-5f);
  bool noted = false;
  for (const std::string& n : r.notes)
    noted = noted || n.find("removed layers [1]; kept layers [0, 2]") != std::string::npos;
  EXPECT_TRUE(noted);
}

INSTANTIATE_TEST_SUITE_P(All, Depth, ::testing::Values("cosine", "loss"));

// Mixture of experts: each expert's channels by its own routed tokens (or by weights when too
// few reach it), every expert of a layer cut to the same width.
TEST(PrunePass, ChannelsOfEveryExpert) {
  CompressedModel m = tiny_model(64, 64, 96, 2, false, 11, 4, 2);
  const CalibrationSet cal = random_calibration(96, 6, 32, 9);
  const PassReport r = run(
      m, "prune", "{structured: channels, sparsity: 0.25, multiple: 1, moe_min_tokens: 60}", &cal);
  for (const LayerSpec& l : m.model.spec.layers) EXPECT_EQ(l.ffn_dim, 48);
  EXPECT_EQ(m.model.tensors.at(names::expert(1, 3, names::kFfnDown)).shape,
            (std::vector<int64_t>{64, 48}));
  EXPECT_TRUE(torch::isfinite(logits(m)).all().item<bool>());
  // Unstructured Wanda on the same model reports the coverage like the quantize pass does.
  CompressedModel w = tiny_model(64, 64, 96, 2, false, 11, 4, 2);
  const PassReport rw = run(w, "prune", "{method: wanda, sparsity: 0.5, moe_min_tokens: 60}", &cal);
  std::string notes;
  for (const std::string& n : rw.notes) notes += n + "\n";
  EXPECT_NE(notes.find("calibration tokens per expert"), std::string::npos) << notes;
  (void)r;
}

// A mask survives structured pruning: its rows and columns follow the tensor.
TEST(PrunePass, MasksFollowStructuredRemoval) {
  CompressedModel m = tiny_model(64, 128, 96, 2, true, 31);
  const CalibrationSet cal = random_calibration(96, 6, 32);
  run(m, "prune", "{method: wanda, pattern: '2:4'}", &cal);
  run(m, "prune", "{structured: channels, sparsity: 0.25}", &cal);
  const SparsityMask& up = m.masks.at(names::blk(0, names::kFfnUp));
  EXPECT_EQ(up.shape, (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(up.pattern(), "2:4");  // rows removed: each row's groups intact
  const SparsityMask& down = m.masks.at(names::blk(0, names::kFfnDown));
  EXPECT_EQ(down.shape, (std::vector<int64_t>{64, 96}));
  EXPECT_EQ(down.pattern(), "unstructured");  // columns removed: groups no longer line up
}

struct Bad {
  const char* name;
  const char* yaml;
  const char* expect;
};
void PrintTo(const Bad& b, std::ostream* os) { *os << b.name; }

class BadOptions : public ::testing::TestWithParam<Bad> {};

// Bad input names the recipe line, the key and the value, at construction or at output_spec
// (before any work), never later.
TEST_P(BadOptions, NameKeyAndValue) {
  const CompressedModel m = tiny_model(64, 128, 96, 2, true);
  const std::string e =
      error_of([&] { (void)pass("prune", GetParam().yaml)->output_spec(m.model.spec); });
  EXPECT_NE(e.find(GetParam().expect), std::string::npos) << e;
  EXPECT_NE(e.find("t.yaml:1"), std::string::npos) << e;
}

INSTANTIATE_TEST_SUITE_P(
    All, BadOptions,
    ::testing::Values(
        Bad{"sparsity_1", "{method: wanda, sparsity: 1.0}",
            "key 'sparsity': sparsity must be in [0, 1), got 1"},
        Bad{"sparsity_negative", "{method: wanda, sparsity: -0.1}", "got -0.1"},
        Bad{"sparsity_missing", "{method: wanda}", "needs sparsity (e.g. 0.5) or pattern"},
        Bad{"n_ge_m", "{method: wanda, pattern: '4:4'}",
            "key 'pattern': pattern 4:4 needs 1 <= N < M"},
        Bad{"not_nm", "{method: wanda, pattern: '2-4'}", "pattern '2-4' is not N:M"},
        Bad{"m_not_dividing", "{method: wanda, pattern: '2:5'}",
            "M 5 does not divide the 64 columns of blk.0.attn_q.weight"},
        Bad{"contradiction", "{method: wanda, pattern: '2:4', sparsity: 0.3}",
            "contradicts pattern 2:4"},
        Bad{"unknown_method", "{method: random, sparsity: 0.5}", "method 'random' is unknown"},
        Bad{"targets_nothing", "{method: wanda, sparsity: 0.5, targets: [attn_qq]}",
            "targets pattern \"attn_qq\" matches no tensor"},
        Bad{"global_wanda", "{method: wanda, sparsity: 0.5, scope: global}",
            "scope global applies to method magnitude only"},
        Bad{"block_size", "{method: sparsegpt, pattern: '2:4', block_size: 126}",
            "block_size 126 is not a multiple"},
        Bad{"unknown_structured", "{structured: bricks, sparsity: 0.5}",
            "structured 'bricks' is unknown"},
        Bad{"method_with_structured", "{method: wanda, structured: heads, sparsity: 0.5}",
            "is for unstructured pruning"},
        Bad{"every_head", "{structured: heads, sparsity: 0.9}",
            "sparsity 0.9 would remove every unit of blk.0 heads"},
        Bad{"every_layer", "{structured: layers, sparsity: 0.9}",
            "would remove every one of the 2 layers"},
        Bad{"partial_unit", "{structured: heads, sparsity: 0.5, targets: [attn_q]}",
            "spans blk.0.attn_q.weight and blk.0.attn_k.weight"},
        Bad{"unknown_head_table", "{structured: heads, sparsity: 0.5, targets: [ffn_down]}",
            "targets select blk.0.ffn_down.weight, which belongs to no head unit"},
        Bad{"head_outside_blocks", "{structured: heads, sparsity: 0.5, targets: [output]}",
            "targets pattern \"output\" matches no tensor"},
        Bad{"unknown_importance", "{structured: heads, sparsity: 0.5, importance: random}",
            "importance 'random' is unknown"}),
    [](const ::testing::TestParamInfo<Bad>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace slmc::prune
