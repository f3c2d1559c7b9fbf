// `slmc prune` and `slmc run` with prune stages, end to end on stories260K (../shared/data): every
// ready prune recipe runs and the runtime agrees with LibTorch on the artifact; structured results
// are smaller and load back as Hugging Face directories; a pruned then quantized .slm keeps its
// exact zero pattern; layers of different widths run in the runtime; bad input exits 2 naming
// the key and value.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "export/format/slm_format.h"
#include "quantize/codec/formats.h"
#include "tests/cli/cli_util.h"

namespace slmc {
namespace {

using namespace slmc::clitest;

const std::string kSample = kData + "/text/tinystories_sample.txt";
const std::string kRecipes = std::string(SLMC_SOURCE_DIR) + "/recipes";
// Calibration: 7 windows of 256 tokens fit the 1882-token sample.
const std::string kCalib = " --calib " + q(kSample) + " --samples 7 --seq-len 256";

nlohmann::json run_json(const std::string& args) {
  const Result r = slmc(args + " --eval " + q(kSample) + " --json");
  EXPECT_EQ(r.code, 0) << r.err;
  if (r.code != 0) return {};
  return nlohmann::json::parse(r.out);
}

struct RecipeCase {
  const char* file;
  bool structured;
};
void PrintTo(const RecipeCase& c, std::ostream* os) { *os << c.file; }

class CliPruneRecipes : public ::testing::TestWithParam<RecipeCase> {};

// Each ready prune recipe runs on stories260K; the runtime's perplexity matches LibTorch's on the
// same artifact within 0.1%; unstructured recipes leave half the block weights exactly zero,
// structured ones fewer parameters and bytes.
TEST_P(CliPruneRecipes, RunsOnStories260K) {
  TempDir d;
  const nlohmann::json j =
      run_json("prune --model " + q(kStories) + " --recipe " + q(kRecipes + "/" + GetParam().file) +
               kCalib + " -o " + q(d.file("p.slm")));
  ASSERT_FALSE(j.is_null());
  EXPECT_LT(j["eval"]["ppl_agreement"].get<double>(), 0.001);
  EXPECT_TRUE(std::isfinite(j["eval"]["compressed"]["kl"].get<double>()));
  const auto& pass = j["passes"][0];
  if (GetParam().structured) {
    EXPECT_LT(j["params_compressed"].get<int64_t>(), j["params_original"].get<int64_t>());
    EXPECT_LT(j["eval"]["compressed"]["bytes"].get<double>(),
              j["eval"]["original"]["bytes"].get<double>());
  } else {
    EXPECT_DOUBLE_EQ(pass["sparsity"].get<double>(), 0.5);
    for (const auto& t : pass["tensors"])
      EXPECT_DOUBLE_EQ(t["sparsity"].get<double>(), 0.5) << t["name"];
    EXPECT_GT(pass["model_sparsity"].get<double>(), 0.4);
  }
}

INSTANTIATE_TEST_SUITE_P(All, CliPruneRecipes,
                         ::testing::Values(RecipeCase{"wanda-2of4.yaml", false},
                                           RecipeCase{"sparsegpt-50.yaml", false},
                                           RecipeCase{"heads-25.yaml", true},
                                           RecipeCase{"channels-25.yaml", true}),
                         [](const ::testing::TestParamInfo<RecipeCase>& i) {
                           std::string n = i.param.file;
                           n = n.substr(0, n.find('.'));
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

// Half the layers as a student: an HF directory that slmc loads back (same perplexity as the
// .slm evaluated with LibTorch) and the report lists the kept layers.
TEST(CliPrune, DepthHalfWritesALoadableStudent) {
  TempDir d;
  const std::string hf = d.file("student");
  const nlohmann::json j =
      run_json("prune --model " + q(kStories) + " --recipe " + q(kRecipes + "/depth-half.yaml") +
               kCalib + " --save-hf " + q(hf) + " -o " + q(d.file("s.slm")));
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["plan"][0]["n_layer_out"].get<int64_t>(), 2);  // 5 blocks, half rounds up
  bool listed = false;
  for (const auto& n : j["passes"][0]["notes"])
    listed = listed || n.get<std::string>().find("kept layers [") != std::string::npos;
  EXPECT_TRUE(listed);
  const Result e = slmc("eval --model " + q(hf) + " --data " + q(kSample) + " --ctx 512 --json");
  ASSERT_EQ(e.code, 0) << e.err;
  const double ppl = nlohmann::json::parse(e.out)["ppl"].get<double>();
  EXPECT_NEAR(ppl, j["eval"]["torch_same_artifact"]["ppl"].get<double>(), 1e-4 * ppl);
}

// A pruned then quantized .slm keeps the exact zero pattern (every group of 4 of every block
// linear holds 2 stored zeros), and the runtime agrees with LibTorch on it.
TEST(CliPrune, PrunedThenQuantizedKeepsTheZeroPattern) {
  TempDir d;
  const std::string out = d.file("pq.slm");
  // recipes/wanda-2of4-int8.yaml with this test's data.
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe)
      << "version: 1\nmodel: " << kStories << "\ndata:\n  calibration: {path: " << kSample
      << ", samples: 7, seq_len: 256}\n  eval: {path: " << kSample
      << ", seq_len: 512}\nstages:\n  - prune: {method: wanda, pattern: \"2:4\"}\n"
      << "  - quantize: {method: rtn, bits: 8}\nexport: [{format: slm, path: " << out << "}]\n";
  const Result r = slmc("run " + q(recipe) + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json jr = nlohmann::json::parse(r.out);
  EXPECT_LT(jr["eval"]["ppl_agreement"].get<double>(), 0.001);
  const format::SlmFile f(out);
  int64_t checked = 0;
  for (const format::SlmTensor& t : f.tensors()) {
    if (t.name.rfind("blk.", 0) != 0 || t.shape.size() != 2) continue;
    // q8_0; ffn_down's 172 columns fit no 32-block and fall back to f16.
    EXPECT_EQ(t.format, t.shape[1] == 172 ? codec::Format::kF16 : codec::Format::kQ8_0) << t.name;
    const std::vector<float> v = codec::dequantize_ref(t.format, f.data(t), t.shape[0], t.shape[1]);
    for (size_t g = 0; g < v.size(); g += 4) {
      int zeros = 0;
      for (size_t k = 0; k < 4; ++k) zeros += v[g + k] == 0.0f;
      ASSERT_GE(zeros, 2) << t.name << " group " << g / 4;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 5 * 7);
}

// Layers of different widths (heads cut in block 0, channels in block 1, by two stages that
// target different blocks) run in the runtime, which agrees with LibTorch.
TEST(CliPrune, RuntimeRunsDifferentWidthsPerLayer) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe)
      << "version: 1\nmodel: " << kStories << "\ndata:\n  calibration: {path: " << kSample
      << ", samples: 7, seq_len: 256}\n  eval: {path: " << kSample << ", seq_len: 512}\nstages:\n"
      << "  - prune: {structured: heads, sparsity: 0.5, targets: [\"re:blk\\\\.0\\\\..*\"]}\n"
      << "  - prune: {structured: channels, sparsity: 0.25, targets: [\"re:blk\\\\.1\\\\..*\"]}\n"
      << "  - quantize: {method: rtn, bits: 8}\n"
      << "export: [{format: slm, path: " << d.file("w.slm") << "}]\n";
  const Result r = slmc("run " + q(recipe) + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_LT(j["eval"]["ppl_agreement"].get<double>(), 0.001);
  const format::SlmFile f(d.file("w.slm"));
  EXPECT_EQ(f.spec().layers[0].n_head, 4);
  EXPECT_EQ(f.spec().layers[0].n_kv_head, 2);
  EXPECT_EQ(f.spec().layers[1].n_head, 8);
  EXPECT_EQ(f.spec().layers[1].ffn_dim, 128);
  EXPECT_EQ(f.spec().layers[2].ffn_dim, 172);
}

struct BadCase {
  const char* name;
  const char* args;
  const char* expect;
  bool calib = true;
};
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class CliPruneBad : public ::testing::TestWithParam<BadCase> {};

// Bad input exits 2 with one line naming the key and the value, before anything is written.
TEST_P(CliPruneBad, ExitsTwoNamingKeyAndValue) {
  TempDir d;
  const Result r = slmc("prune --model " + q(kStories) + (GetParam().calib ? kCalib : "") + " " +
                        GetParam().args + " -o " + q(d.file("o.slm")));
  expect_input_error(r, GetParam().expect);
  EXPECT_FALSE(fs::exists(d.file("o.slm")));
}

INSTANTIATE_TEST_SUITE_P(
    All, CliPruneBad,
    ::testing::Values(
        BadCase{"Sparsity15", "--method wanda --sparsity 1.5",
                "--sparsity: sparsity must be in [0, 1), got 1.5"},
        BadCase{"NGreaterM", "--method wanda --pattern 4:2",
                "--pattern: pattern 4:2 needs 1 <= N < M"},
        BadCase{"MNotDividing", "--method wanda --pattern 2:3",
                "M 3 does not divide the 64 columns of blk.0.attn_q.weight"},
        BadCase{"EveryHead", "--structured heads --sparsity 0.95",
                "would remove every unit of blk.0 heads"},
        BadCase{"EveryLayer", "--structured layers --sparsity 0.95",
                "would remove every one of the 5 layers"},
        BadCase{"TargetsNothing", "--method wanda --sparsity 0.5 --targets attn_qq",
                "targets pattern \"attn_qq\" matches no tensor"},
        BadCase{"HeadTableUnknown", "--structured heads --sparsity 0.25 --targets ffn_down",
                "targets select blk.0.ffn_down.weight, which belongs to no head unit"},
        BadCase{"NoCalibration", "--method sparsegpt --sparsity 0.5",
                "slmc prune: stage 'prune' needs calibration data", false}),
    [](const ::testing::TestParamInfo<BadCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace slmc
