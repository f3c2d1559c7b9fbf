#include "quantize/awq.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "quantize/quant_common.h"

namespace slmc::quant {
namespace {

using codec::Format;

const Format kGridFormats[] = {Format::kQ8_0, Format::kQ4_0, Format::kQ4_G64, Format::kQ4_G128};

// sum over tokens of ||(W - Q) x_t||^2 / n_tokens, in double: the search's loss, computed the slow
// and obvious way.
double output_loss(const torch::Tensor& X, const torch::Tensor& W, const torch::Tensor& Q) {
  const torch::Tensor e = X.to(torch::kFloat64).mm((W - Q).to(torch::kFloat64).t());
  return e.pow(2).sum().item<double>() / static_cast<double>(X.size(0));
}

// Q(W diag(s)) diag(s)^-1 through the codec itself.
torch::Tensor scaled_rtn(const torch::Tensor& W, Format f, const torch::Tensor& s) {
  return rtn_quantize(W * s, f).dequant / s;
}

double group_loss(const torch::Tensor& X, const std::vector<torch::Tensor>& Ws,
                  const std::vector<Format>& fs, const torch::Tensor& s) {
  double loss = 0;
  for (size_t i = 0; i < Ws.size(); ++i) loss += output_loss(X, Ws[i], scaled_rtn(Ws[i], fs[i], s));
  return loss;
}

// Activations whose listed channels are 10-50x larger than the rest (LLM outlier features).
torch::Tensor salient_inputs(int64_t n, int64_t cols, const std::vector<int64_t>& channels) {
  torch::Tensor X = torch::randn({n, cols});
  const float mags[] = {10, 25, 50, 35, 15};
  for (size_t i = 0; i < channels.size(); ++i) X.select(1, channels[i]).mul_(mags[i % 5]);
  return X;
}

std::vector<torch::Tensor> random_linears(int n, int64_t rows, int64_t cols) {
  std::vector<torch::Tensor> Ws;
  for (int i = 0; i < n; ++i) Ws.push_back(torch::randn({rows, cols}) * 0.05);
  return Ws;
}

// Weights that stress the codec's edge cases: magnitudes from fp16-subnormal scales to large ones,
// all-zero blocks, blocks of one value, blocks whose largest magnitudes tie with opposite signs,
// and values on exact rounding midpoints.
torch::Tensor awkward_weights(int64_t rows, int64_t cols) {
  torch::Tensor W = torch::randn({rows, cols});
  const torch::Tensor row_scale =
      torch::pow(10.0, torch::linspace(-7, 2, rows)).to(torch::kFloat32).unsqueeze(1);
  W = W * row_scale;
  W[0].zero_();
  W[1].fill_(0.3f);
  W[2].fill_(-1.5f);
  W.select(0, 3).copy_(torch::randint(-8, 8, {cols}).to(torch::kFloat32) * 0.25f);
  W.select(0, 4).copy_(torch::randint(-16, 16, {cols}).to(torch::kFloat32) * 0.5f + 0.25f);
  for (int64_t b = 0; b < cols; b += 32) {  // +-amax ties, the negative one first
    W[5][b + 3] = -2.0f;
    W[5][b + 17] = 2.0f;
  }
  W[6] = torch::randn({cols}).abs() + 0.1;  // all positive: lo = 0 for the q4_g formats
  W[7] = -(torch::randn({cols}).abs() + 0.1);
  return W;
}

TEST(AwqTest, FakeQuantizeMatchesTheCodecExactly) {
  torch::manual_seed(1);
  const torch::Tensor W = awkward_weights(64, 256);
  for (const codec::FormatInfo& fi : codec::all_formats()) {
    SCOPED_TRACE(fi.name);
    const torch::Tensor ref = rtn_quantize(W, fi.id).dequant;
    const torch::Tensor fast = awq_fake_quantize(W, fi.id);
    EXPECT_TRUE(torch::equal(fast, ref)) << (fast - ref).abs().max().item<float>();
  }
  for (Format f : kGridFormats) {
    SCOPED_TRACE(codec::format_info(f).name);
    const int64_t nb = 256 / codec::format_info(f).block_size;
    torch::Tensor clip = 0.5 + 0.5 * torch::rand({64, nb});
    clip.select(1, 0).fill_(1.0f);
    const torch::Tensor ref = rtn_quantize(W, f, {}, clip).dequant;
    const torch::Tensor fast = awq_fake_quantize(W, f, clip);
    EXPECT_TRUE(torch::equal(fast, ref)) << (fast - ref).abs().max().item<float>();
  }
}

TEST(AwqTest, FakeQuantizeMatchesTheCodecOnScaledWeights) {
  // What the scale search actually quantizes: W diag(s) with s spread over orders of magnitude.
  torch::manual_seed(2);
  const torch::Tensor W = torch::randn({96, 384}) * 0.02;
  const torch::Tensor s = torch::exp(torch::randn({384}) * 1.5);
  for (Format f : kGridFormats) {
    SCOPED_TRACE(codec::format_info(f).name);
    EXPECT_TRUE(torch::equal(awq_fake_quantize(W * s, f), rtn_quantize(W * s, f).dequant));
  }
}

TEST(AwqTest, ScalesProtectSalientChannels) {
  for (Format f : {Format::kQ4_0, Format::kQ4_G128}) {
    torch::manual_seed(3);
    const int64_t cols = 256;
    const torch::Tensor X = salient_inputs(1024, cols, {5, 77, 130, 201});
    const std::vector<torch::Tensor> Ws = random_linears(3, 128, cols);
    const std::vector<Format> fs(3, f);
    for (bool duo : {true, false}) {
      SCOPED_TRACE(std::string(codec::format_info(f).name) +
                   (duo ? " duo scaling" : " activation scaling"));
      AwqOptions o;
      o.duo_scaling = duo;
      const AwqScaleResult r = awq_search_scales(Ws, X, fs, o);
      ASSERT_EQ(r.scales.sizes(), torch::IntArrayRef({cols}));
      EXPECT_TRUE(torch::isfinite(r.scales).all().item<bool>());
      EXPECT_GT(r.scales.min().item<float>(), 0.0f);
      EXPECT_LT(r.loss_best, 0.8 * r.loss_plain);
      EXPECT_GT(r.best_ratio, 0.0);
      EXPECT_LT(r.best_ratio, 1.0);
      // Both losses recomputed independently: the codec's RTN and the per-token output error.
      const double plain = group_loss(X, Ws, fs, torch::ones({cols}));
      const double best = group_loss(X, Ws, fs, r.scales);
      EXPECT_NEAR(r.loss_plain, plain, 1e-4 * plain);
      EXPECT_NEAR(r.loss_best, best, 1e-4 * best);
      // The salient channels are the ones scaled up.
      const float median = r.scales.median().item<float>();
      for (int64_t c : {5, 77, 130, 201}) EXPECT_GT(r.scales[c].item<float>(), 2 * median) << c;
    }
  }
}

TEST(AwqTest, MixedFormatsInOneGroup) {
  torch::manual_seed(4);
  const torch::Tensor X = salient_inputs(512, 256, {10, 100});
  const std::vector<torch::Tensor> Ws = random_linears(3, 64, 256);
  const std::vector<Format> fs = {Format::kQ4_0, Format::kQ4_G64, Format::kQ8_0};
  const AwqScaleResult r = awq_search_scales(Ws, X, fs, AwqOptions());
  EXPECT_LT(r.loss_best, r.loss_plain);
  const double best = group_loss(X, Ws, fs, r.scales);
  EXPECT_NEAR(r.loss_best, best, 1e-4 * best);
}

TEST(AwqTest, FoldingTheScalesKeepsTheFunction) {
  torch::manual_seed(5);
  const torch::Tensor X = salient_inputs(256, 128, {3, 64});
  const std::vector<torch::Tensor> Ws = random_linears(2, 64, 128);
  const AwqScaleResult r = awq_search_scales(Ws, X, {Format::kQ4_0, Format::kQ4_0}, AwqOptions());
  ASSERT_LT(r.loss_best, r.loss_plain);  // non-trivial scales
  for (const torch::Tensor& W : Ws) {
    const torch::Tensor folded = (X / r.scales).mm((W * r.scales).t());
    const torch::Tensor plain = X.mm(W.t());
    EXPECT_LT((folded - plain).norm().item<float>(), 1e-4f * plain.norm().item<float>());
  }
}

TEST(AwqTest, IsotropicInputsAreNeverMadeWorse) {
  for (int seed = 0; seed < 2; ++seed)
    for (Format f : kGridFormats) {
      SCOPED_TRACE(std::string(codec::format_info(f).name) + " seed " + std::to_string(seed));
      torch::manual_seed(100 + seed);
      const torch::Tensor X = torch::randn({512, 256});
      const std::vector<torch::Tensor> Ws = random_linears(2, 64, 256);
      const std::vector<Format> fs(2, f);
      const AwqScaleResult r = awq_search_scales(Ws, X, fs, AwqOptions());
      EXPECT_LE(r.loss_best, r.loss_plain);
      const double plain = group_loss(X, Ws, fs, torch::ones({256}));
      const double best = group_loss(X, Ws, fs, r.scales);
      EXPECT_LE(best, plain * (1 + 1e-6));
      if (torch::equal(r.scales, torch::ones({256}))) {
        EXPECT_EQ(r.loss_best, r.loss_plain);
        EXPECT_EQ(r.best_ratio, 0.0);
      }
    }
}

TEST(AwqTest, ExactlyRepresentableWeightsKeepUnitScales) {
  // Nothing can beat a loss of zero, so the search must return ones.
  torch::manual_seed(6);
  const torch::Tensor W = torch::randint(-8, 8, {32, 64}).to(torch::kFloat32) * 0.125f;
  W.select(1, 0).fill_(-1.0f);  // every q4_0 block's largest magnitude is -1: d = 1/8
  W.select(1, 32).fill_(-1.0f);
  ASSERT_TRUE(torch::equal(rtn_quantize(W, Format::kQ4_0).dequant, W));
  const AwqScaleResult r =
      awq_search_scales({W}, salient_inputs(128, 64, {7}), {Format::kQ4_0}, AwqOptions());
  EXPECT_EQ(r.loss_plain, 0.0);
  EXPECT_EQ(r.loss_best, 0.0);
  EXPECT_TRUE(torch::equal(r.scales, torch::ones({64})));
}

TEST(AwqTest, TokenSubsampleIsEvenAndDeterministic) {
  // Every row repeated four times in a row: an even subsample of a quarter of the tokens sees each
  // distinct row exactly once, so it must agree with the search on the distinct rows.
  torch::manual_seed(7);
  const torch::Tensor base = salient_inputs(300, 128, {9, 90});
  const torch::Tensor X = base.repeat_interleave(4, 0);
  const std::vector<torch::Tensor> Ws = random_linears(2, 32, 128);
  const std::vector<Format> fs(2, Format::kQ4_0);
  AwqOptions sub;
  sub.max_tokens = 300;
  const AwqScaleResult a = awq_search_scales(Ws, X, fs, sub);
  const AwqScaleResult b = awq_search_scales(Ws, base, fs, AwqOptions());
  const AwqScaleResult c = awq_search_scales(Ws, X, fs, sub);
  EXPECT_TRUE(torch::equal(a.scales, b.scales));
  EXPECT_NEAR(a.loss_best, b.loss_best, 1e-5 * b.loss_best);
  EXPECT_TRUE(torch::equal(a.scales, c.scales));
  EXPECT_EQ(a.loss_best, c.loss_best);
}

// Output error of each (row, block) on its own: sum_t (x_tb . (w_b - q_b))^2.
torch::Tensor block_errors(const torch::Tensor& X, const torch::Tensor& W, const torch::Tensor& Q,
                           int64_t bs) {
  const int64_t rows = W.size(0), nb = W.size(1) / bs, n = X.size(0);
  const torch::Tensor e = (W - Q).to(torch::kFloat64).view({rows, nb, bs});
  const torch::Tensor x = X.to(torch::kFloat64).view({n, nb, bs});
  return torch::einsum("tbj,rbj->rbt", {x, e}).pow(2).sum(-1);  // (rows, nb)
}

// Weights with a few outliers per row: the case clipping exists for.
torch::Tensor heavy_tailed(int64_t rows, int64_t cols) {
  torch::Tensor W = torch::randn({rows, cols}) * 0.02;
  const torch::Tensor outliers = torch::rand({rows, cols}) < 0.01;
  return torch::where(outliers, W * 8, W);
}

TEST(AwqTest, ClipFactorsAreOnTheGridAndNeverHurtABlock) {
  for (Format f : kGridFormats) {
    SCOPED_TRACE(codec::format_info(f).name);
    torch::manual_seed(8);
    const int64_t rows = 64, cols = 256, bs = codec::format_info(f).block_size;
    const torch::Tensor W = heavy_tailed(rows, cols);
    const torch::Tensor X = salient_inputs(400, cols, {1, 140});
    AwqOptions o;
    o.clip_grid = 10;
    const torch::Tensor c = awq_search_clip(W, X, f, o);
    ASSERT_EQ(c.sizes(), torch::IntArrayRef({rows, cols / bs}));
    EXPECT_GE(c.min().item<float>(), 0.5f);
    EXPECT_LE(c.max().item<float>(), 1.0f);
    const torch::Tensor steps = (1 - c) / 0.05;  // multiples of 0.5 / clip_grid
    EXPECT_LT((steps - steps.round()).abs().max().item<float>(), 1e-3f);
    EXPECT_LT(c.min().item<float>(), 1.0f);  // outliers make clipping worth it somewhere

    const torch::Tensor clipped = rtn_quantize(W, f, {}, c).dequant;
    const torch::Tensor unclipped = rtn_quantize(W, f, {}, torch::ones_like(c)).dequant;
    const torch::Tensor ec = block_errors(X, W, clipped, bs);
    const torch::Tensor eu = block_errors(X, W, unclipped, bs);
    EXPECT_TRUE((ec <= eu * (1 + 1e-5) + 1e-12).all().item<bool>())
        << (ec - eu).max().item<double>();
    EXPECT_LT(ec.sum().item<double>(), 0.95 * eu.sum().item<double>());
    EXPECT_LT(output_loss(X, W, clipped), output_loss(X, W, unclipped));
  }
}

TEST(AwqTest, ClipNeverHurtsARowWhenBlocksDoNotInteract) {
  // Each token is non-zero in one block only, so a row's output error is the sum of its blocks'
  // errors and the per-block optimum is the per-row optimum.
  for (Format f : {Format::kQ4_0, Format::kQ4_G128}) {
    SCOPED_TRACE(codec::format_info(f).name);
    torch::manual_seed(9);
    const int64_t rows = 48, cols = 256, bs = codec::format_info(f).block_size, nb = cols / bs;
    const torch::Tensor W = heavy_tailed(rows, cols);
    torch::Tensor X = torch::randn({256, cols});
    const torch::Tensor owner = torch::arange(256) % nb;  // token t lives in block t % nb
    const torch::Tensor block_of_col = torch::arange(cols) / bs;
    X = X * (owner.unsqueeze(1) == block_of_col.unsqueeze(0)).to(torch::kFloat32);
    const torch::Tensor c = awq_search_clip(W, X, f, AwqOptions());
    const torch::Tensor clipped = rtn_quantize(W, f, {}, c).dequant;
    const torch::Tensor unclipped = rtn_quantize(W, f, {}, torch::ones_like(c)).dequant;
    const torch::Tensor Xd = X.to(torch::kFloat64);
    const torch::Tensor rc = Xd.mm((W - clipped).to(torch::kFloat64).t()).pow(2).sum(0);
    const torch::Tensor ru = Xd.mm((W - unclipped).to(torch::kFloat64).t()).pow(2).sum(0);
    EXPECT_TRUE((rc <= ru * (1 + 1e-5) + 1e-12).all().item<bool>());
    EXPECT_LT(rc.sum().item<double>(), ru.sum().item<double>());
  }
}

TEST(AwqTest, ClipKeepsFullRangeWhenClippingCannotHelp) {
  // Two-valued blocks {0, a} with `a` on the format's grid: the full range is exact, any shrink
  // moves `a`. And all-zero blocks, where every factor ties.
  const std::pair<Format, float> cases[] = {{Format::kQ8_0, 127.0f / 128},
                                            {Format::kQ4_0, 0.5f},
                                            {Format::kQ4_G64, 15.0f / 16},
                                            {Format::kQ4_G128, 15.0f / 16}};
  for (const auto& [f, a] : cases) {
    SCOPED_TRACE(codec::format_info(f).name);
    torch::manual_seed(10);
    const int64_t bs = codec::format_info(f).block_size;
    torch::Tensor W = (torch::rand({16, 256}) < 0.5).to(torch::kFloat32) * a;
    W.select(1, 0).fill_(a);  // every block holds `a` at least once
    for (int64_t b = 0; b < 256; b += bs) W.select(1, b).fill_(a);
    W[3].zero_();  // every factor gives the same (zero) error here: the tie must keep 1
    ASSERT_TRUE(torch::equal(rtn_quantize(W, f, {}, torch::ones({16, 256 / bs})).dequant, W));
    const torch::Tensor c = awq_search_clip(W, torch::randn({300, 256}), f, AwqOptions());
    EXPECT_TRUE(torch::equal(c, torch::ones_like(c)));
  }
}

template <class F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error, expected one mentioning '" << needle << "'";
  } catch (const slmc::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(AwqTest, OptionsValidateNameTheKey) {
  AwqOptions o;
  EXPECT_NO_THROW(o.validate());
  o.grid = 0;
  expect_error([&] { o.validate(); }, "awq_grid must be >= 1, got 0");
  o = AwqOptions();
  o.clip_grid = -3;
  expect_error([&] { o.validate(); }, "awq_clip_grid must be >= 1, got -3");
  o = AwqOptions();
  o.max_tokens = 0;
  expect_error([&] { o.validate(); }, "awq_max_tokens must be >= 1, got 0");
  // The searches validate too.
  const torch::Tensor W = torch::randn({8, 64}), X = torch::randn({16, 64});
  expect_error([&] { awq_search_scales({W}, X, {Format::kQ4_0}, o); }, "awq_max_tokens");
  expect_error([&] { awq_search_clip(W, X, Format::kQ4_0, o); }, "awq_max_tokens");
}

TEST(AwqTest, BadInputsThrow) {
  const torch::Tensor W = torch::randn({8, 64}), X = torch::randn({16, 64});
  const AwqOptions o;
  torch::Tensor Xn = X.clone();
  Xn[3][5] = std::nanf("");
  expect_error([&] { awq_search_scales({W}, Xn, {Format::kQ4_0}, o); }, "non-finite");
  expect_error([&] { awq_search_clip(W, Xn, Format::kQ4_0, o); }, "non-finite");
  AwqOptions few;
  few.max_tokens = 4;  // samples rows 0, 4, 8, 12: the NaN in row 3 must still be caught
  expect_error([&] { awq_search_scales({W}, Xn, {Format::kQ4_0}, few); }, "non-finite");
  expect_error([&] { awq_search_clip(W, Xn, Format::kQ4_0, few); }, "non-finite");
  torch::Tensor Wi = W.clone();
  Wi[0][0] = INFINITY;
  expect_error([&] { awq_search_scales({W, Wi}, X, {Format::kQ4_0, Format::kQ4_0}, o); },
               "linear 1 has non-finite");
  expect_error([&] { awq_search_clip(Wi, X, Format::kQ4_0, o); }, "non-finite");
  expect_error([&] { awq_search_scales({W}, X, {Format::kQ4_0, Format::kQ4_0}, o); }, "formats");
  expect_error([&] { awq_search_scales({}, X, {}, o); }, "no linears");
  expect_error([&] { awq_search_scales({W}, torch::randn({16, 32}), {Format::kQ4_0}, o); },
               "columns");
  expect_error([&] { awq_search_scales({W}, X, {Format::kQ4_G128}, o); }, "multiple of 128");
  expect_error([&] { awq_search_clip(W, X, Format::kF16, o); }, "grid");
  expect_error([&] { awq_fake_quantize(W, Format::kQ4_0, torch::ones({8, 3})); }, "clip must be");
}

}  // namespace
}  // namespace slmc::quant
