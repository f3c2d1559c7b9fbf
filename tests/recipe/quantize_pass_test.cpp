// The quantize pass on small in-memory models: planning (formats, fallbacks, head, selectors),
// what it stores, calibration errors, and the size budget of target_bpw.
#include "quantize/quantize_pass.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <string>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/recipe/yaml_options.h"
#include "tests/recipe/tiny_model.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using quant::QuantizeOptions;
using slmc::testing::error_of;
using slmc::testing::random_calibration;
using slmc::testing::tiny_model;

// A pass from a YAML mapping, as a recipe stage builds it.
std::unique_ptr<Pass> pass_from_yaml(const std::string& yaml) {
  quant::register_quantize_pass();
  return make_pass("quantize", "t.yaml", YAML::Load(yaml), "t.yaml:1");
}

TEST(QuantizePass, RtnPacksMatricesWithHeadAndFallbacks) {
  CompressedModel m = tiny_model(64, 48, 96, 2, /*tied=*/true);
  const CompressedModel before = m;
  auto p = pass_from_yaml("{method: rtn, bits: 4}");
  PassContext ctx;
  const PassReport r = p->run(m, ctx);
  // Every matrix: 2 layers x 7 + the tied embedding; norms stay fp32 and unpacked.
  EXPECT_EQ(r.tensors.size(), 15u);
  EXPECT_EQ(m.packed.size(), 15u);
  EXPECT_EQ(m.packed.at(names::kTokenEmbd).format, codec::Format::kQ8_0);  // the tied head
  EXPECT_EQ(m.packed.at(names::blk(0, names::kAttnQ)).format, codec::Format::kQ4_0);
  // 48 columns: no 32-group format fits, so f16, reported.
  EXPECT_EQ(m.packed.at(names::blk(1, names::kFfnDown)).format, codec::Format::kF16);
  bool noted = false;
  for (const TensorReport& t : r.tensors)
    if (t.name == names::blk(1, names::kFfnDown)) {
      EXPECT_TRUE(t.fallback);
      EXPECT_NE(t.note.find("48 columns"), std::string::npos) << t.note;
      noted = true;
    }
  EXPECT_TRUE(noted);
  EXPECT_EQ(m.packed.count(names::blk(0, names::kAttnNorm)), 0u);
  // The fp32 tensors hold exactly what the packed bytes decode to.
  for (const auto& kv : m.packed) {
    const std::vector<float> deq = codec::dequantize_ref(kv.second.format, kv.second.bytes.data(),
                                                         kv.second.shape[0], kv.second.shape[1]);
    EXPECT_EQ(deq, m.model.tensors.at(kv.first).data) << kv.first;
  }
  for (const TensorReport& t : r.tensors) {
    EXPECT_GT(t.dist.rel_l2, 0.0) << t.name;
    EXPECT_LT(t.dist.rel_l2, t.format == "q4_0" ? 0.2 : 0.01) << t.name;
  }
  EXPECT_EQ(m.model.tensors.at(names::blk(0, names::kAttnNorm)).data,
            before.model.tensors.at(names::blk(0, names::kAttnNorm)).data);
}

TEST(QuantizePass, ExplicitGroupSizeThatDoesNotDivideIsAnError) {
  const CompressedModel m = tiny_model(64, 48, 96, 2, true);
  auto p = pass_from_yaml("{method: rtn, bits: 4, group_size: 32}");
  const std::string e = error_of([&] { (void)p->output_spec(m.model.spec); });
  EXPECT_NE(e.find("group_size 32 does not divide the 48 columns of blk.0.ffn_down.weight"),
            std::string::npos) << e;
  EXPECT_NE(e.find("t.yaml:1"), std::string::npos) << e;
  // Ignoring the tensor makes the same explicit group size fine.
  auto ok = pass_from_yaml("{method: rtn, bits: 4, group_size: 32, ignore: [ffn_down]}");
  EXPECT_NO_THROW((void)ok->output_spec(m.model.spec));
}

TEST(QuantizePass, TargetsAndIgnore) {
  CompressedModel m = tiny_model(64, 64, 96, 2, /*tied=*/false);
  auto p = pass_from_yaml(R"({method: rtn, bits: 8, targets: ["re:blk\\.1\\..*", output], ignore: [attn_v]})");
  PassContext ctx;
  p->run(m, ctx);
  EXPECT_EQ(m.packed.count(names::kOutput), 1u);
  EXPECT_EQ(m.packed.at(names::kOutput).format, codec::Format::kQ8_0);  // bits 8: no head rule
  EXPECT_EQ(m.packed.count(names::kTokenEmbd), 0u);
  EXPECT_EQ(m.packed.count(names::blk(0, names::kAttnQ)), 0u);
  EXPECT_EQ(m.packed.count(names::blk(1, names::kAttnQ)), 1u);
  EXPECT_EQ(m.packed.count(names::blk(1, names::kAttnV)), 0u);
  const std::string e = error_of([&] {
    pass_from_yaml("{method: rtn, targets: [attn_qq]}")->output_spec(m.model.spec);
  });
  EXPECT_NE(e.find("targets pattern \"attn_qq\" matches no tensor"), std::string::npos) << e;
}

TEST(QuantizePass, CalibratedMethodsNeedValidCalibration) {
  CompressedModel m = tiny_model(64, 64, 96, 2, true);
  auto p = pass_from_yaml("{method: gptq, bits: 4}");
  PassContext none;
  EXPECT_NE(error_of([&] { p->run(m, none); }).find("needs calibration data"), std::string::npos);
  CalibrationSet bad = random_calibration(96, 2, 16);
  bad.rows[1][5] = 96;
  PassContext ctx;
  ctx.calibration = &bad;
  EXPECT_NE(error_of([&] { p->run(m, ctx); }).find("token id 96 is outside"), std::string::npos);
}

TEST(QuantizePass, NonFiniteActivationNamesTheTensor) {
  CompressedModel m = tiny_model(64, 64, 96, 2, true);
  m.model.tensors.at(names::blk(1, names::kFfnNorm)).data[3] = NAN;
  const CalibrationSet c = random_calibration(96, 2, 16);
  PassContext ctx;
  ctx.calibration = &c;
  const std::string e = error_of([&] { pass_from_yaml("{method: gptq, bits: 4}")->run(m, ctx); });
  EXPECT_NE(e.find("non-finite activation at the input of blk.1.ffn_gate.weight (layer 1)"),
            std::string::npos) << e;
}

// GPTQ and AWQ run layer by layer on a model whose every dimension fits every format, store every
// target, and their calibrated output error is below round-to-nearest's on the same inputs.
class CalibratedMethods : public ::testing::TestWithParam<const char*> {};

TEST_P(CalibratedMethods, RunAndStoreEveryTarget) {
  CompressedModel m = tiny_model(128, 256, 128, 2, true);
  const CalibrationSet c = random_calibration(128, 8, 64);
  PassContext ctx;
  ctx.calibration = &c;
  auto p = pass_from_yaml(std::string("{method: ") + GetParam() + ", bits: 4, calib_batch: 3}");
  const PassReport r = p->run(m, ctx);
  EXPECT_EQ(m.packed.size(), 15u);
  for (const TensorReport& t : r.tensors) {
    ASSERT_TRUE(t.extra.count("out_err")) << t.name;
    EXPECT_TRUE(std::isfinite(t.extra.at("out_err"))) << t.name;
  }
  for (const auto& kv : m.model.tensors)
    for (float v : kv.second.data) ASSERT_TRUE(std::isfinite(v)) << kv.first;
  EXPECT_GT(r.peak_rss_bytes, 0);
}

INSTANTIATE_TEST_SUITE_P(All, CalibratedMethods, ::testing::Values("gptq", "awq"));

// Runs a target_bpw pass on a tiny tied model with `rows` random calibration rows of 32 tokens.
PassReport run_mix(const std::string& yaml, int64_t layers, int64_t rows) {
  CompressedModel m = tiny_model(128, 256, 128, layers, true);
  const CalibrationSet c = random_calibration(128, rows, 32);
  PassContext ctx;
  ctx.calibration = &c;
  return pass_from_yaml(yaml)->run(m, ctx);
}

// 8 x stored bytes / weights over the report's tensors.
double stored_bpw(const PassReport& r) {
  int64_t n = 0;
  uint64_t bytes = 0;
  for (const TensorReport& t : r.tensors) {
    n += t.n_weights;
    bytes += t.bytes_after;
  }
  return 8.0 * static_cast<double>(bytes) / static_cast<double>(n);
}

TEST(QuantizePass, TargetBpwLandsWithinOnePercentOfTheBudget) {
  const PassReport r = run_mix("{method: rtn, target_bpw: 5.0, sens_samples: 2}", 3, 4);
  for (const TensorReport& t : r.tensors) EXPECT_TRUE(t.extra.count("kl_sens")) << t.name;
  const double bpw = stored_bpw(r);
  EXPECT_LE(bpw, 5.0);
  EXPECT_GE(bpw, 5.0 * 0.99);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("target_bpw 5.000"), std::string::npos) << r.notes[0];
}

// gptq with target_bpw: the allocator fixes each tensor's bytes; among the candidates of exactly
// those bytes (q4_0 and q4_g64 at 4.5 bits) the layer-wise pass keeps the one whose GPTQ result
// has the least output error, and says so in the tensor's note. The budget still holds.
TEST(QuantizePass, GptqMixPicksSameSizeFormatsByOutputError) {
  const PassReport r = run_mix("{method: gptq, target_bpw: 4.5, sens_samples: 2}", 2, 8);
  const std::string key = "same-size formats by output error: ";
  int64_t chosen_by_error = 0;
  for (const TensorReport& t : r.tensors) {
    const size_t at = t.note.find(key);
    if (at == std::string::npos) continue;
    ++chosen_by_error;
    std::istringstream in(t.note.substr(at + key.size()));
    std::string fmt;
    double e = 0, lowest = INFINITY, chosen = INFINITY;
    while (in >> fmt >> e) {
      lowest = std::min(lowest, e);
      if (fmt == t.format) chosen = e;
      if (in.peek() == ',') in.get();
      if (in.peek() == ';') break;
    }
    // The note prints 6 digits: a near-tie may print equal.
    EXPECT_LE(chosen, lowest) << t.name << ": " << t.note;
  }
  EXPECT_GT(chosen_by_error, 0);
  EXPECT_LE(stored_bpw(r), 4.5);
}

// Asymmetric calibration on a tied model: both streams start from the same embedding, so layer
// 0's inputs are identical, D = 0, and its tensors are stored exactly as without asym_calib. From
// layer 1 on, the quantized stream differs and so do the stored codes.
TEST(QuantizePass, GptqAsymCalibStartsWhereTheStreamsDiffer) {
  const CalibrationSet c = random_calibration(128, 8, 32);
  auto run = [&](const char* yaml) {
    CompressedModel m = tiny_model(128, 256, 128, 2, true);
    PassContext ctx;
    ctx.calibration = &c;
    pass_from_yaml(yaml)->run(m, ctx);
    return m;
  };
  const CompressedModel plain = run("{method: gptq, bits: 4, asym_calib: 0}");
  const CompressedModel asym = run("{method: gptq, bits: 4, asym_calib: 0.75}");
  int64_t layer0 = 0, differ1 = 0;
  for (const auto& kv : plain.packed) {
    ASSERT_TRUE(asym.packed.count(kv.first)) << kv.first;
    const bool same = kv.second.bytes == asym.packed.at(kv.first).bytes;
    if (kv.first.rfind("blk.0.", 0) == 0) {
      ++layer0;
      EXPECT_TRUE(same) << kv.first;
    }
    if (kv.first.rfind("blk.1.", 0) == 0 && !same) ++differ1;
  }
  EXPECT_EQ(layer0, 7);
  EXPECT_GT(differ1, 0);
}

TEST(QuantizePass, FallbackChain) {
  using codec::Format;
  EXPECT_EQ(quant::fallback_format(Format::kQ4_G128, 192), Format::kQ4_G64);
  EXPECT_EQ(quant::fallback_format(Format::kQ4_G128, 160), Format::kQ4_0);
  EXPECT_EQ(quant::fallback_format(Format::kQ4_G64, 172), Format::kF16);
  EXPECT_EQ(quant::fallback_format(Format::kQ8_0, 172), Format::kF16);
  QuantizeOptions o;
  o.bits = 4;
  o.group_size = 128;
  EXPECT_EQ(quant::resolve_format(o, "x"), Format::kQ4_G128);
  o.format = "q8_0";
  o.group_size = 0;
  EXPECT_EQ(quant::resolve_format(o, "x"), Format::kQ8_0);
}

}  // namespace
}  // namespace slmc
