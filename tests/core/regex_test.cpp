#include "compress/core/regex.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "compress/core/error.h"

namespace slmc {
namespace {

std::vector<std::string> split_all(const Regex& re, const std::string& s) {
  std::vector<std::string> out;
  Regex::Matcher m(re);
  size_t from = 0, b = 0, e = 0;
  while (m.find(s, from, &b, &e)) {
    out.push_back(s.substr(b, e - b));
    from = e > b ? e : e + 1;
  }
  return out;
}

TEST(Regex, UnicodePropertiesAndLookaheadOfTokenizerPatterns) {
  // GPT-2's pre-tokenizer pattern: letters, numbers, other, whitespace not before non-space.
  const Regex gpt2(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
                   "gpt2");
  EXPECT_EQ(split_all(gpt2, "Héllo wörld  42!"),
            (std::vector<std::string>{"Héllo", " wörld", " ", " 42", "!"}));
  const Regex digits(R"(\p{N}{1,3})", "digits");
  EXPECT_EQ(split_all(digits, "12345٣"), (std::vector<std::string>{"123", "45٣"}));
}

TEST(Regex, FullMatchForSelectors) {
  const Regex re(R"(blk\.\d+\.attn_.*)", "sel");
  EXPECT_TRUE(re.full_match("blk.3.attn_q.weight"));
  EXPECT_FALSE(re.full_match("xblk.3.attn_q.weight"));
  EXPECT_FALSE(re.full_match("blk.3.ffn_up.weight"));
}

TEST(Regex, HostilePatternsFailWithErrorsNotCrashesOrHangs) {
  const std::string deep = std::string(5000, '(') + "a" + std::string(5000, ')');
  try {
    Regex r(deep, "recipe.yaml:3");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("recipe.yaml:3"), std::string::npos) << e.what();
  }
  Regex::Options small;
  small.max_pattern_bytes = 64;
  EXPECT_THROW(Regex(std::string(65, 'a'), "o", small), Error);
  EXPECT_THROW(Regex("(", "o"), Error);
  EXPECT_THROW(Regex(std::string("\xff"), "o"), Error);
  // Catastrophic backtracking stops at the match limit with an error instead of hanging.
  std::string pat;
  for (int i = 0; i < 12; ++i) pat += "(.*)*";
  pat += "x";
  const Regex evil(pat, "evil");
  EXPECT_THROW((void)evil.full_match("x" + std::string(40, 'a')), Error);
}

TEST(Regex, Utf8Validation) {
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("\xe2\x96\x81 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(valid_utf8("\xe2\x96"));          // truncated
}

}  // namespace
}  // namespace slmc
