// Every model family end to end through `slmc quantize`: int4 GPTQ on the family's tiny random
// checkpoint in its exact Hugging Face layout (tests/model/gen_goldens.py), `.slm` export, and the
// runtime's evaluation, whose perplexity must match LibTorch's on the same artifact within 0.1%.
// Plus the MoE coverage contract: an expert that no calibration token reaches is reported and
// still quantized (rtn fallback) to finite values.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "export/format/slm_format.h"
#include "quantize/codec/formats.h"
#include "tests/cli/cli_util.h"

#ifndef SLMC_MODEL_GOLDEN_DIR
#error "SLMC_MODEL_GOLDEN_DIR must name the directory gen_goldens.py writes"
#endif

namespace slmc {
namespace {

using namespace slmc::clitest;

std::string case_dir(const std::string& c) { return std::string(SLMC_MODEL_GOLDEN_DIR) + "/" + c; }

// gen_goldens.py writes tokens.h5 (4096 ids, 1-D) beside every checkpoint: 16 calibration windows
// of 64 positions, and the same stream for evaluation.
nlohmann::json quantize_gptq(const std::string& c, const TempDir& d, const std::string& extra = "") {
  const std::string dir = case_dir(c), tokens = dir + "/tokens.h5";
  const Result r = slmc("quantize --model " + q(dir) + " --method gptq --bits 4 --calib " +
                        q(tokens) + " --samples 16 --seq-len 64 --eval " + q(tokens) +
                        " --eval-ctx 64 --json -o " + q(d.file(c + ".slm")) + extra);
  EXPECT_EQ(r.code, 0) << c << ": " << r.err;
  if (r.code != 0) return {};
  return nlohmann::json::parse(r.out);
}

class FamilyQuantize : public ::testing::TestWithParam<const char*> {};

TEST_P(FamilyQuantize, Int4GptqRuntimeMatchesLibTorch) {
  TempDir d;
  const nlohmann::json j = quantize_gptq(GetParam(), d);
  ASSERT_FALSE(j.is_null());
  const auto& qz = j["eval"]["compressed"];
  const double ppl = qz["ppl"].get<double>();
  const double ppl_torch = j["eval"]["torch_same_artifact"]["ppl"].get<double>();
  std::printf("[ family   ] %-22s int4 gptq: %.3f bits/weight, ppl runtime %.5f, LibTorch %.5f, KL %.4g, top-1 %.3f\n",
              GetParam(), qz["bits_per_weight"].get<double>(), ppl, ppl_torch,
              qz["kl"].get<double>(), qz["top1"].get<double>());
  EXPECT_TRUE(std::isfinite(ppl));
  EXPECT_LT(j["eval"]["ppl_agreement"].get<double>(), 0.001)
      << "runtime ppl " << ppl << " vs LibTorch " << ppl_torch;
  // Every tensor whose rows hold whole 32-weight groups is stored in q4_0 (the head in q8_0);
  // the others fall back (to f16 at these tiny widths) and say so.
  int quantized = 0;
  for (const auto& t : j["passes"][0]["tensors"]) {
    const std::string name = t["name"].get<std::string>(), f = t["format"].get<std::string>();
    if (t["shape"][1].get<int64_t>() % 32 == 0) {
      EXPECT_TRUE(f == "q4_0" || f == "q8_0") << name << " " << f;
      quantized += f == "q4_0";
    } else {
      EXPECT_TRUE(t["fallback"].get<bool>()) << name << " " << f;
    }
  }
  EXPECT_GT(quantized, 0);
  EXPECT_LT(qz["bits_per_weight"].get<double>(), 16.0);
}

INSTANTIATE_TEST_SUITE_P(Cases, FamilyQuantize,
                         ::testing::Values("llama3_tied_ropescaled", "phi3_fused", "gemma3_text",
                                           "openelm_layerwise", "mixtral_moe"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

// mixtral_dead_expert: 5 experts, top-2, router rows (a, -a, b, -b, 0), so expert 4 never wins a
// token. The report must show the per-expert counts with expert 4 at 0, the expert must be
// quantized (rtn fallback, noted per tensor), and its stored weights must decode to finite values.
TEST(FamilyQuantizeMoe, ExpertWithoutCalibrationTokensIsReportedAndQuantized) {
  TempDir d;
  const nlohmann::json j = quantize_gptq("mixtral_dead_expert", d);
  ASSERT_FALSE(j.is_null());
  const auto& pass = j["passes"][0];
  int coverage_notes = 0;
  for (const auto& n : pass["notes"]) {
    const std::string s = n.get<std::string>();
    if (s.find("calibration tokens per expert") == std::string::npos) continue;
    ++coverage_notes;
    EXPECT_NE(s.find(", 0]"), std::string::npos) << s;  // expert 4 (the last) got no token
    EXPECT_NE(s.find("expert 4 (0)"), std::string::npos) << s;
  }
  EXPECT_GT(coverage_notes, 0) << pass["notes"].dump();
  int dead = 0;
  for (const auto& t : pass["tensors"]) {
    const std::string name = t["name"].get<std::string>();
    if (name.find(".expert.4.") == std::string::npos) continue;
    ++dead;
    // 32 columns (gate, up) hold q4_0 groups; down's 40 do not and fall back to f16.
    EXPECT_EQ(t["format"].get<std::string>(), t["shape"][1].get<int64_t>() % 32 == 0 ? "q4_0" : "f16")
        << name;
    ASSERT_TRUE(t.contains("note")) << name;
    EXPECT_NE(t["note"].get<std::string>().find("rtn"), std::string::npos) << t["note"];
  }
  EXPECT_EQ(dead, 3 * 2) << "gate, up and down of expert 4 in both layers";

  format::SlmFile f(d.file("mixtral_dead_expert.slm"));
  int checked = 0;
  for (const format::SlmTensor& t : f.tensors()) {
    if (t.name.find(".expert.4.") == std::string::npos) continue;
    ++checked;
    ASSERT_EQ(t.shape.size(), 2u);
    std::vector<float> row(static_cast<size_t>(t.shape[1]));
    const size_t row_bytes = t.n_bytes / static_cast<size_t>(t.shape[0]);
    double sum_abs = 0;
    for (int64_t r = 0; r < t.shape[0]; ++r) {
      codec::dequantize_row_ref(t.format, f.data(t) + static_cast<size_t>(r) * row_bytes, t.shape[1],
                                row.data());
      for (float v : row) {
        ASSERT_TRUE(std::isfinite(v)) << t.name << " row " << r;
        sum_abs += std::fabs(v);
      }
    }
    EXPECT_GT(sum_abs, 0.0) << t.name << " decodes to all zeros";
  }
  EXPECT_EQ(checked, 6);
  EXPECT_LT(j["eval"]["ppl_agreement"].get<double>(), 0.001);
}

// An expert below moe_min_tokens falls back too; moe_min_tokens 0 still never skips the dead one.
TEST(FamilyQuantizeMoe, MinTokensZeroStillQuantizesTheDeadExpert) {
  TempDir d;
  const nlohmann::json j = quantize_gptq("mixtral_dead_expert", d, " --moe-min-tokens 0");
  ASSERT_FALSE(j.is_null());
  int dead = 0;
  for (const auto& t : j["passes"][0]["tensors"])
    if (t["name"].get<std::string>().find(".expert.4.") != std::string::npos) ++dead;
  EXPECT_EQ(dead, 6);
}

}  // namespace
}  // namespace slmc
