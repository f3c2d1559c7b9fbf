// Recipe parsing and selectors: every bad recipe names file:line and the key.
#include <gtest/gtest.h>

#include <chrono>
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
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
}

INSTANTIATE_TEST_SUITE_P(
    All, RecipeErrors,
    ::testing::Values(
        BadRecipe{"unknown top key", "version: 1\nstagez: []\n", ":2: unknown key \"stagez\""},
        BadRecipe{"unknown stage key", "stages:\n  - quantize:\n      method: rtn\n      bitz: 4\n",
                  ":4: unknown key \"bitz\" in quantize"},
        BadRecipe{"wrong type", "stages:\n  - quantize: {method: rtn, bits: four}\n",
                  ":2: key 'bits' must be an integer, got \"four\""},
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
        BadRecipe{"bad regex", "stages:\n  - quantize: {targets: \"re:([\"}\n", "bad regex"},
        // Hostile recipes (issue 18): valid YAML that is not a recipe, refused with file:line.
        BadRecipe{"mapping key", "? {a: 1}\n: 2\n", ":1: a mapping key must be a plain string, got a mapping"},
        BadRecipe{"list key", "stages:\n  - ? [quantize]\n    : {}\n", ":2: a mapping key must be a plain string, got a list"},
        BadRecipe{"duplicate top key", "stages:\n  - quantize: {}\nstages:\n  - quantize: {}\n",
                  ":3: key \"stages\" appears twice in one mapping"},
        BadRecipe{"duplicate option", "stages:\n  - quantize: {bits: 4, bits: 8}\n",
                  ":2: key \"bits\" appears twice in one mapping"},
        BadRecipe{"second document", "stages:\n  - quantize: {}\n---\nstages: []\n",
                  "a second YAML document"},
        BadRecipe{"nan gate", "stages:\n  - quantize: {}\ngates: {max_kl: .nan}\n",
                  ":3: key 'max_kl' must be a finite number, got \".nan\""},
        BadRecipe{"inf gate", "stages:\n  - quantize: {}\ngates:\n  min_top1: -.inf\n",
                  ":4: key 'min_top1' must be a finite number"},
        BadRecipe{"nan option", "stages:\n  - quantize: {method: gptq, damp: .NaN}\n",
                  ":2: key 'damp' must be a finite number"},
        BadRecipe{"alias cycle", "stages: &a [*a]\n", "nested deeper than 32 levels"},
        BadRecipe{"odd stage name", "stages:\n  - Quantize-it: {}\n", ":2: unknown stage \"Quantize-it\""},
        // Fuzzer finding: yaml-cpp 0.7's LoadAll looped forever (allocating) on this input.
        BadRecipe{"endless documents", "  a:\n ,\n", ":2:2: YAML syntax error: text after the document"},
        BadRecipe{"null key", "? \n: 3\nstages: []\n", "a mapping key must be a plain string"}),
    [](const ::testing::TestParamInfo<BadRecipe>& i) {
      std::string n = i.param.name;
      for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      return n;
    });

// Regexes from a recipe run on PCRE2 with bounds: no stack overflow, no hang, no huge pattern.
TEST(Selector, HostileRegexesFailFastWithTheirOrigin) {
  const auto compile = [](const std::string& re) {
    PatternList t;
    t.add("re:" + re, "r.yaml:5 (targets)");
    return Selector(t, {});
  };
  // Nested thousands deep (std::regex overflowed the stack): over the length cap, or, within it,
  // over PCRE2's nesting limit.
  std::string e = error_of([&] { compile(std::string(3000, '(') + "a" + std::string(3000, ')')); });
  EXPECT_NE(e.find("r.yaml:5 (targets): bad regex: regex of 6001 bytes is longer than the limit of 1024"),
            std::string::npos) << e;
  e = error_of([&] { compile(std::string(400, '(') + "a" + std::string(400, ')')); });
  EXPECT_NE(e.find("r.yaml:5 (targets): bad regex"), std::string::npos) << e;
  EXPECT_NE(e.find("too deeply nested"), std::string::npos) << e;
  // Catastrophic backtracking (std::regex ran for minutes): PCRE2's match limit ends it.
  std::string bomb;
  for (int i = 0; i < 12; ++i) bomb += "(.*)*";
  bomb += "x";
  const Selector s = compile(bomb);
  const std::string name = "blk.0.expert.1.ffn_up.weight.and.a.long.tail.without.the.letter";
  const auto t0 = std::chrono::steady_clock::now();
  e = error_of([&] { (void)s.selected(name); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 5.0);
  if (!e.empty()) {
    EXPECT_NE(e.find("r.yaml:5 (targets)"), std::string::npos) << e;
  }
}

TEST(Recipe, LongNamesAreQuotedBounded) {
  TempDir d;
  const std::string p =
      write(d, "r.yaml", "stages:\n  - " + std::string(100000, 'q') + ": {}\n" + std::string(50000, 'k') + ": 1\n");
  const std::string e = error_of([&] { load_recipe(p); });
  EXPECT_NE(e.find(p + ":"), std::string::npos) << e.substr(0, 300);
  EXPECT_LT(e.size(), 500u) << e.substr(0, 300);
}

// Fuzzer finding (tests/fuzz/regressions/fuzz_recipe/yaml_error_message_with_a_newline):
// yaml-cpp's message echoed a control character of the input, which split the error line.
TEST(Recipe, YamlErrorsStayOneLine) {
  TempDir d;
  const std::string p = write(d, "r.yaml", std::string("version: 1\ndat0x7\0\nfff: 1\n", 26));
  const std::string e = error_of([&] { load_recipe(p); });
  EXPECT_NE(e.find(p + ":"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_EQ(e.find('\0'), std::string::npos) << e;
}

TEST(Recipe, DeepYamlIsRefusedNotACrash) {
  TempDir d;
  const std::string p = write(d, "r.yaml", "stages: " + std::string(100000, '[') + "\n");
  const std::string e = error_of([&] { load_recipe(p); });
  EXPECT_NE(e.find(p + ":"), std::string::npos) << e;
  EXPECT_LT(e.size(), 500u) << e;
}

}  // namespace
}  // namespace slmc
