// Recipe parsing and selectors: every bad recipe names file:line and the key.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "compress/core/error.h"
#include "compress/recipe/recipe.h"
#include "compress/recipe/selector.h"
#include "quantize/quantize_pass.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using slmc::testing::TempDir;
using slmc::testing::error_of;

std::string write(const TempDir& d, const std::string& name, const std::string& text) {
  const std::string p = d.file(name);
  std::ofstream(p) << text;
  return p;
}

struct Registered {
  Registered() { quant::register_quantize_pass(); }
};
const Registered kRegistered;

TEST(Selector, PlainNamesMatchWholeComponents) {
  EXPECT_TRUE(pattern_matches("ffn_down", "blk.3.ffn_down.weight"));
  EXPECT_TRUE(pattern_matches("blk.3.ffn_down", "blk.3.ffn_down.weight"));
  EXPECT_TRUE(pattern_matches("blk.3.ffn_down.weight", "blk.3.ffn_down.weight"));
  EXPECT_TRUE(pattern_matches("output", "output.weight"));
  EXPECT_FALSE(pattern_matches("output", "output_norm.weight"));
  EXPECT_FALSE(pattern_matches("down", "blk.3.ffn_down.weight"));
  EXPECT_FALSE(pattern_matches("blk.1", "blk.11.attn_q.weight"));
  EXPECT_FALSE(pattern_matches("blk.3.ffn_down", "blk.13.ffn_down.weight"));
}

TEST(Selector, RegexMustMatchTheWholeName) {
  EXPECT_TRUE(pattern_matches("re:blk\\.[0-2]\\..*", "blk.2.attn_q.weight"));
  EXPECT_FALSE(pattern_matches("re:blk\\.[0-2]\\..*", "blk.12.attn_q.weight"));
  EXPECT_FALSE(pattern_matches("re:attn", "blk.0.attn_q.weight"));  // not a search
  EXPECT_TRUE(pattern_matches("re:.*attn.*", "blk.0.attn_q.weight"));
}

TEST(Selector, TargetsMinusIgnoreAndUnmatchedPatterns) {
  PatternList t, i;
  t.add("re:.*ffn.*", "r.yaml:3");
  i.add("blk.1.ffn_up", "r.yaml:4");
  const Selector s(t, i);
  EXPECT_TRUE(s.selected("blk.0.ffn_up.weight"));
  EXPECT_FALSE(s.selected("blk.1.ffn_up.weight"));
  EXPECT_FALSE(s.selected("blk.0.attn_q.weight"));
  EXPECT_NO_THROW(s.check_all_match({"blk.0.ffn_up.weight", "blk.1.ffn_up.weight"}));
  const std::string e = error_of([&] { s.check_all_match({"blk.0.ffn_up.weight"}); });
  EXPECT_NE(e.find("r.yaml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("blk.1.ffn_up"), std::string::npos) << e;
  PatternList bad;
  bad.add("re:([", "r.yaml:9");
  EXPECT_NE(error_of([&] { Selector(bad, {}); }).find("r.yaml:9: bad regex"), std::string::npos);
  EXPECT_TRUE(Selector({}, {}).selected("anything"));  // no targets: everything
}

TEST(Recipe, ParsesStagesDataExportAndGates) {
  TempDir d;
  const std::string p = write(d, "r.yaml", R"(version: 1
data:
  calibration: {path: calib.txt, samples: 16, seq_len: 64}
  eval: {path: /abs/eval.txt, seq_len: 128}
stages:
  - quantize: {method: gptq, bits: 4, group_size: 128, damp: 0.02, targets: [ffn_down, "re:.*attn_q.*"], ignore: output}
export: [{format: slm, path: out.slm}]
gates: {max_kl: 0.05, max_bytes: 1000}
)");
  const Recipe r = load_recipe(p);
  EXPECT_EQ(r.calibration.path, d.file("calib.txt"));  // relative to the recipe
  EXPECT_EQ(r.calibration.samples, 16);
  EXPECT_EQ(r.eval.path, "/abs/eval.txt");
  ASSERT_EQ(r.stages.size(), 1u);
  EXPECT_EQ(r.stages[0].kind, "quantize");
  const std::string opts = r.stages[0].pass->resolved_options();
  EXPECT_NE(opts.find("method: gptq"), std::string::npos) << opts;
  EXPECT_NE(opts.find("group_size: 128"), std::string::npos) << opts;
  EXPECT_NE(opts.find("damp: 0.02"), std::string::npos) << opts;
  EXPECT_NE(opts.find("targets: [ffn_down, re:.*attn_q.*]"), std::string::npos) << opts;
  EXPECT_NE(opts.find("ignore: [output]"), std::string::npos) << opts;
  EXPECT_TRUE(r.stages[0].pass->needs_calibration());
  ASSERT_EQ(r.exports.size(), 1u);
  EXPECT_EQ(r.exports[0].path, "out.slm");
  EXPECT_DOUBLE_EQ(r.gates.max_kl, 0.05);
  EXPECT_EQ(r.gates.max_bytes, 1000);
}

struct BadRecipe {
  const char* name;
  const char* yaml;
  const char* expect;  // in the message, after "r.yaml:"
};

class RecipeErrors : public ::testing::TestWithParam<BadRecipe> {};

TEST_P(RecipeErrors, NameFileLineAndKey) {
  TempDir d;
  const std::string p = write(d, "r.yaml", GetParam().yaml);
  const std::string e = error_of([&] { load_recipe(p); });
  ASSERT_FALSE(e.empty()) << "no error for " << GetParam().name;
  EXPECT_NE(e.find(p + ":"), std::string::npos) << e;
  EXPECT_NE(e.find(GetParam().expect), std::string::npos) << e;
}

INSTANTIATE_TEST_SUITE_P(
    All, RecipeErrors,
    ::testing::Values(
        BadRecipe{"unknown top key", "version: 1\nstagez: []\n", ":2: unknown key 'stagez'"},
        BadRecipe{"unknown stage key", "stages:\n  - quantize:\n      method: rtn\n      bitz: 4\n",
                  ":4: unknown key 'bitz' in quantize"},
        BadRecipe{"wrong type", "stages:\n  - quantize: {method: rtn, bits: four}\n",
                  ":2: key 'bits' must be an integer, got 'four'"},
        BadRecipe{"bool type", "stages:\n  - quantize: {method: gptq, act_order: maybe}\n",
                  ":2: key 'act_order' must be a boolean"},
        BadRecipe{"bits 3", "stages:\n  - quantize:\n      bits: 3\n",
                  ":3: key 'bits': bits 3: no format supports it"},
        BadRecipe{"group 48", "stages:\n  - quantize: {bits: 4, group_size: 48}\n",
                  "group_size 48 is not available for 4 bits"},
        BadRecipe{"bits 8 group 64", "stages:\n  - quantize: {bits: 8, group_size: 64}\n",
                  "bits 8 is stored as q8_0"},
        BadRecipe{"unknown method", "stages:\n  - quantize: {method: smooth}\n",
                  ":2: key 'method': method 'smooth' is unknown"},
        BadRecipe{"unknown stage", "stages:\n  - squash: {}\n", ":2: unknown stage 'squash'"},
        BadRecipe{"bad damp", "stages:\n  - quantize: {method: gptq, damp: 0}\n", "damp"},
        BadRecipe{"per channel gptq",
                  "stages:\n  - quantize:\n      method: gptq\n      per_channel: true\n",
                  ":4: key 'per_channel': per_channel applies to method rtn only"},
        BadRecipe{"symmetric awq", "stages:\n  - quantize: {method: awq, symmetric: true}\n",
                  "key 'symmetric': symmetric applies to method rtn only"},
        BadRecipe{"act order w/o static groups",
                  "stages:\n  - quantize: {method: gptq, act_order: true, static_groups: false}\n",
                  "static_groups"},
        BadRecipe{"bpw out of reach", "stages:\n  - quantize: {method: gptq, target_bpw: 2}\n",
                  "key 'target_bpw': target_bpw 2 is outside"},
        BadRecipe{"bad mix format", "stages:\n  - quantize: {target_bpw: 5, mix_formats: \"q4_0,q3_k\"}\n",
                  "mix_formats 'q3_k' is not a format"},
        BadRecipe{"version", "version: 2\nstages:\n  - quantize: {}\n", ":1: recipe version 2"},
        BadRecipe{"no stages", "version: 1\n", "'stages' is required"},
        BadRecipe{"samples 0", "data:\n  calibration: {path: c.txt, samples: 0}\nstages:\n  - quantize: {}\n",
                  ":2: data.calibration.samples must be >= 1"},
        BadRecipe{"export format", "stages:\n  - quantize: {}\nexport: [{format: onnx, path: a}]\n",
                  ":3: export format 'onnx'"},
        BadRecipe{"gate type", "stages:\n  - quantize: {}\ngates: {max_kl: low}\n",
                  ":3: key 'max_kl' must be a number"},
        BadRecipe{"bad regex", "stages:\n  - quantize: {targets: \"re:([\"}\n", "bad regex"}),
    [](const ::testing::TestParamInfo<BadRecipe>& i) {
      std::string n = i.param.name;
      for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

}  // namespace
}  // namespace slmc
