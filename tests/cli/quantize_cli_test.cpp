// `slmc quantize` and `slmc run` end to end on stories260K (../shared/data): every ready recipe in
// recipes/ is parsed and run, runtime and LibTorch agree on each quantized artifact, and bad
// recipes, flags and calibration data exit 2 with file:line and key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "compress/io/h5.h"
#include "tests/cli/cli_util.h"

namespace slmc {
namespace {

using namespace slmc::clitest;

const std::string kSample = kData + "/text/tinystories_sample.txt";
const std::string kRecipes = std::string(SLMC_SOURCE_DIR) + "/recipes";

// Calibration: 7 windows of 256 tokens fit the 1882-token sample.
const std::string kCalib = " --calib " + q(kSample) + " --samples 7 --seq-len 256";

nlohmann::json quantize_json(const std::string& args, const TempDir& d) {
  const Result r = slmc("quantize --model " + q(kStories) + " " + args + " --eval " + q(kSample) +
                        " --json -o " + q(d.file("out.slm")));
  EXPECT_EQ(r.code, 0) << r.err;
  if (r.code != 0) return {};
  return nlohmann::json::parse(r.out);
}

class CliRecipes : public ::testing::TestWithParam<const char*> {};

// Each ready recipe runs on stories260K; the artifact is smaller than f32, decodes in the runtime,
// and the runtime's perplexity matches LibTorch's on the same artifact within 0.1%.
TEST_P(CliRecipes, RunsOnStories260K) {
  TempDir d;
  const nlohmann::json j =
      quantize_json("--recipe " + q(kRecipes + "/" + GetParam()) + kCalib, d);
  ASSERT_FALSE(j.is_null());
  const auto& qz = j["eval"]["compressed"];
  EXPECT_LT(qz["bits_per_weight"].get<double>(), 11.0);
  EXPECT_GT(qz["top1"].get<double>(), 0.5);
  EXPECT_TRUE(std::isfinite(qz["kl"].get<double>()));
  EXPECT_LT(j["eval"]["ppl_agreement"].get<double>(), 0.001)
      << "runtime ppl " << qz["ppl"] << " vs LibTorch " << j["eval"]["torch_same_artifact"]["ppl"];
  EXPECT_GT(j["passes"][0]["peak_rss_bytes"].get<int64_t>(), 0);
}

INSTANTIATE_TEST_SUITE_P(All, CliRecipes,
                         ::testing::Values("int8.yaml", "int4-rtn.yaml", "int4-gptq.yaml",
                                           "int4-awq.yaml", "mix-4.5bpw.yaml"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           n = n.substr(0, n.find('.'));
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// The acceptance comparisons at Q4_0 size on stories260K (the bench prints the full table).
TEST(CliQuantize, CalibratedMethodsBeatRoundToNearest) {
  TempDir d;
  const std::string common = " --bits 4 --format q4_0 --head-format q4_0 --ignore ffn_down" + kCalib;
  const double rtn = quantize_json("--method rtn" + common, d)["eval"]["compressed"]["kl"].get<double>();
  const double gptq = quantize_json("--method gptq" + common, d)["eval"]["compressed"]["kl"].get<double>();
  const double awq = quantize_json("--method awq" + common, d)["eval"]["compressed"]["kl"].get<double>();
  EXPECT_LT(gptq, rtn) << "gptq " << gptq << " rtn " << rtn;
  EXPECT_LT(awq, rtn) << "awq " << awq << " rtn " << rtn;
}

TEST(CliQuantize, FlagsComeFromTheOptionsDeclaration) {
  const Result r = slmc("quantize --help");
  EXPECT_EQ(r.code, 0);
  for (const char* f : {"--method", "--bits", "--group-size", "--target-bpw", "--damp",
                        "--act-order", "--awq-grid", "--targets", "--ignore", "--head-format"})
    EXPECT_NE(r.out.find(f), std::string::npos) << f << " missing from\n" << r.out;
}

TEST(CliQuantize, RunExecutesARecipeWithGates) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories << "\ndata:\n  eval: {path: " << kSample
                        << ", seq_len: 512}\nstages:\n  - quantize: {method: rtn, bits: 8}\n"
                        << "export: [{format: slm, path: " << d.file("a.slm") << "}]\n"
                        << "gates: {max_kl: 0.01, min_top1: 0.9}\n";
  Result r = slmc("run " + q(recipe));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(d.file("a.slm")));
  std::ofstream(recipe, std::ios::app) << "";
  // An impossible gate fails the run with the gate's line.
  std::string text = read_file(recipe);
  text.replace(text.find("max_kl: 0.01"), 12, "max_kl: 1e-9");
  std::ofstream(recipe) << text;
  r = slmc("run " + q(recipe));
  EXPECT_EQ(r.code, 3) << "a failed gate exits 3";
  EXPECT_NE(r.err.find(recipe + ":8: gate failed: max_kl"), std::string::npos) << r.err;
}

struct BadCase {
  const char* name;
  const char* stage;   // the quantize mapping's lines (indented 6)
  const char* expect;  // after "r.yaml:"
};

class CliBadRecipe : public ::testing::TestWithParam<BadCase> {};

TEST_P(CliBadRecipe, ExitsTwoWithFileLineAndKey) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe) << "version: 1\nstages:\n  - quantize:\n" << GetParam().stage;
  const Result r = slmc("quantize --model " + q(kStories) + " --recipe " + q(recipe) + kCalib +
                        " -o " + q(d.file("o.slm")));
  expect_input_error(r, recipe + GetParam().expect);
  EXPECT_FALSE(fs::exists(d.file("o.slm")));
}

INSTANTIATE_TEST_SUITE_P(
    All, CliBadRecipe,
    ::testing::Values(
        BadCase{"UnknownKey", "      method: rtn\n      group: 32\n", ":5: unknown key \"group\""},
        BadCase{"WrongType", "      method: rtn\n      bits: eight\n", ":5: key 'bits' must be an integer"},
        BadCase{"Bits3", "      method: rtn\n      bits: 3\n", ":5: key 'bits': bits 3: no format"},
        // stories260K's ffn_down has 172 columns; an explicit group of 32 cannot hold them.
        BadCase{"GroupDoesNotDivide", "      method: rtn\n      bits: 4\n      group_size: 32\n",
                ":6: key 'group_size': group_size 32 does not divide the 172 columns of "
                "blk.0.ffn_down.weight"},
        BadCase{"TargetsMatchNothing", "      method: rtn\n      targets: [attn_qkv]\n",
                ":5 (targets): targets pattern \"attn_qkv\" matches no tensor"}),
    [](const ::testing::TestParamInfo<BadCase>& i) { return std::string(i.param.name); });

TEST(CliQuantizeBadData, CalibrationTooShortOrOutsideVocab) {
  TempDir d;
  Result r = slmc("quantize --model " + q(kStories) + " --method gptq --calib " + q(kSample) +
                  " --samples 100 --seq-len 256 -o " + q(d.file("o.slm")));
  expect_input_error(r, "calibration data too short: 1882 tokens make 7 windows");
  // Token ids beyond the 512-token vocab in an HDF5 token file.
  TokenData td;
  td.tokens.assign(2000, 5);
  td.tokens[1000] = 9999;
  td.bos_id = 1;
  td.tokenizer = "test";
  write_tokens_h5(d.file("t.h5"), td);
  r = slmc("quantize --model " + q(kStories) + " --method gptq --calib " + q(d.file("t.h5")) +
           " --samples 2 --seq-len 64 -o " + q(d.file("o.slm")));
  expect_input_error(r, "9999");
  EXPECT_FALSE(fs::exists(d.file("o.slm")));
  r = slmc("quantize --model " + q(kStories) + " --method rtn --bits 4 --recipe " +
           q(kRecipes + "/int8.yaml") + " -o " + q(d.file("o2.slm")));
  expect_input_error(r, "give either --recipe or method flags");
}

}  // namespace
}  // namespace slmc
