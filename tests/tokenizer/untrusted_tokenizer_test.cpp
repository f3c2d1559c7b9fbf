// Tokenizer files as an attacker writes them (issue 18): claims in headers are checked against
// what the file holds, and nothing is sized from a claim. Minimized fuzzer findings live here too.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>

#include "compress/core/error.h"
#include "compress/tokenizer/llama2c_tokenizer.h"
#include "compress/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using slmc::testing::peak_rss_kb;

// A llama2.c tokenizer.bin: <unk>, BOS, EOS, 256 byte tokens, " ", "a", "ab", with the header
// claiming `max_token_length`.
std::string llama2c_bin(int32_t max_token_length) {
  std::string b;
  const auto i32 = [&](int32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  const auto tok = [&](const std::string& s, float score) {
    b.append(reinterpret_cast<const char*>(&score), 4);
    i32(static_cast<int32_t>(s.size()));
    b += s;
  };
  i32(max_token_length);
  tok("<unk>", 0);
  tok("\n<s>\n", 0);
  tok("\n</s>\n", 0);
  for (int c = 0; c < 256; ++c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", c);
    tok(buf, 0);
  }
  tok(" ", -1);
  tok("a", -2);
  tok("ab", -3);
  return b;
}

TEST(UntrustedLlama2cTokenizer, HeaderClaimIsNotTrusted) {
  // 1.4 G claimed, 6 bytes the longest token: encode() used to reserve 2.75 GB per call.
  const std::string bytes = llama2c_bin(1'400'000'000);
  ASSERT_LT(bytes.size(), 8192u);
  const auto honest = load_llama2c_tokenizer(llama2c_bin(6), "honest.bin");
  const long rss0 = peak_rss_kb();
  const auto tok = load_llama2c_tokenizer(bytes, "tokenizer.bin");
  EXPECT_EQ(tok->max_token_length(), 6);  // "<0x00>"
  const std::string text = "ab a aab \xff";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(tok->encode(text), honest->encode(text));
  EXPECT_LT(peak_rss_kb() - rss0, 64 * 1024) << "encode must not size buffers from the header";
}

TEST(UntrustedLlama2cTokenizer, TokenLongerThanTheClaimIsRefused) {
  testing::expect_error([] { load_llama2c_tokenizer(llama2c_bin(5), "tok.bin"); },
                        {"tok.bin", "length 6 > max_token_length 5"});
}

}  // namespace
}  // namespace slmc
