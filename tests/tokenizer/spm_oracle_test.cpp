// Our SentencePiece reader and BPE encoder against libsentencepiece itself. This executable links
// libsentencepiece and slmc_tokenizer only: never LibTorch (two protobuf copies crash at load).
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/tokenizer/sentencepiece.h"
#include "compress/tokenizer/tokenizer.h"
#include "tests/tokenizer/model_proto_writer.h"

namespace slmc {
namespace {

const std::string kData = SLMC_SHARED_DATA;
const std::string kModelPath = kData + "/models/stories260K/tok512.model";
const std::vector<std::string> kTexts = {"tinystories_sample.txt", "wikitext-2-test.txt",
                                         "tinyshakespeare.txt"};

bool have_data() { return std::filesystem::exists(kModelPath); }

std::string escape(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += "0123456789abcdef"[c >> 4];
      out += "0123456789abcdef"[c & 15];
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

// Ours and the oracle, loaded from the same serialized ModelProto.
struct Pair {
  sentencepiece::SentencePieceProcessor sp;
  std::unique_ptr<SentencePieceTokenizer> ours;
};

std::unique_ptr<Pair> load_pair(const std::string& bytes, const std::string& label) {
  auto p = std::make_unique<Pair>();
  const auto status = p->sp.LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    ADD_FAILURE() << label << ": libsentencepiece refuses the model: " << status.ToString();
    return nullptr;
  }
  p->ours = load_sentencepiece(bytes, label);
  return p;
}

const Pair& tok512() {
  static const std::unique_ptr<Pair> p = load_pair(read_file(kModelPath), kModelPath);
  return *p;
}

std::string ids_str(const std::vector<int>& ids, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to && i < ids.size(); ++i)
    s += (s.empty() ? "" : " ") + std::to_string(ids[i]);
  return s;
}

// Our ids equal libsentencepiece's; on a mismatch, says where, with context.
::testing::AssertionResult same_ids(const Pair& p, std::string_view text,
                                    const std::string& label) {
  const std::vector<int> want = p.sp.EncodeAsIds(text);
  const std::vector<int32_t> got32 = p.ours->encode(text);
  const std::vector<int> got(got32.begin(), got32.end());
  if (want == got) return ::testing::AssertionSuccess();
  size_t k = 0;
  while (k < want.size() && k < got.size() && want[k] == got[k]) ++k;
  // Byte offset of the difference in the decoded text, for context.
  const std::string before = p.sp.DecodeIds(std::vector<int>(want.begin(), want.begin() + k));
  const size_t at = std::min(before.size(), text.size());
  const size_t from = at > 40 ? at - 40 : 0;
  return ::testing::AssertionFailure()
         << label << ": first differing token " << k << " (libsentencepiece " << want.size()
         << " tokens, ours " << got.size() << "), near byte " << at << " of " << text.size()
         << ": \"" << escape(text.substr(from, 80)) << "\"\n  libsentencepiece: ... "
         << ids_str(want, k, k + 8) << "\n  ours:             ... " << ids_str(got, k, k + 8);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

TEST(SpmOracle, VocabularyAndSpecialIds) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  const Pair& p = tok512();
  ASSERT_EQ(p.ours->vocab_size(), p.sp.GetPieceSize());
  EXPECT_EQ(p.ours->bos_id(), p.sp.bos_id());
  EXPECT_EQ(p.ours->eos_id(), p.sp.eos_id());
  EXPECT_EQ(p.ours->unk_id(), p.sp.unk_id());
  EXPECT_EQ(p.ours->bos_id(), 1);
  EXPECT_EQ(p.ours->eos_id(), 2);
  for (int id = 0; id < p.sp.GetPieceSize(); ++id) {
    EXPECT_EQ(p.ours->piece(id), p.sp.IdToPiece(id)) << id;
    EXPECT_EQ(p.ours->score(id), p.sp.GetScore(id)) << id;
    const SpmPieceType t = p.ours->type(id);
    EXPECT_EQ(t == SpmPieceType::kControl, p.sp.IsControl(id)) << id;
    EXPECT_EQ(t == SpmPieceType::kUnknown, p.sp.IsUnknown(id)) << id;
    EXPECT_EQ(t == SpmPieceType::kByte, p.sp.IsByte(id)) << id;
    EXPECT_EQ(t == SpmPieceType::kUnused, p.sp.IsUnused(id)) << id;
    EXPECT_EQ(p.ours->piece_to_id(p.sp.IdToPiece(id)), p.sp.PieceToId(p.sp.IdToPiece(id))) << id;
  }
  EXPECT_EQ(p.ours->piece_to_id("not a piece"), p.sp.PieceToId("not a piece"));
}

TEST(SpmOracle, WholeTexts) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  const Pair& p = tok512();
  for (const std::string& name : kTexts) {
    const std::string text = read_file(kData + "/text/" + name);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ours = p.ours->encode(text);
    const auto t1 = std::chrono::steady_clock::now();
    const std::vector<int> theirs = p.sp.EncodeAsIds(text);
    const auto t2 = std::chrono::steady_clock::now();
    const double ours_s = std::chrono::duration<double>(t1 - t0).count();
    const double theirs_s = std::chrono::duration<double>(t2 - t1).count();
    std::cout << "[ spm-oracle ] " << name << ": " << text.size() << " bytes -> " << ours.size()
              << " tokens; encode " << ours_s * 1e3 << " ms (" << text.size() / ours_s / 1e6
              << " MB/s), libsentencepiece " << theirs_s * 1e3 << " ms\n";
    EXPECT_TRUE(same_ids(p, text, name));
  }
}

TEST(SpmOracle, EveryLineAndItsDecoding) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  const Pair& p = tok512();
  for (const std::string& name : kTexts) {
    const std::vector<std::string> lines = lines_of(read_file(kData + "/text/" + name));
    size_t failures = 0;
    for (size_t i = 0; i < lines.size() && failures < 5; ++i) {
      const std::string label = name + " line " + std::to_string(i + 1);
      const auto ok = same_ids(p, lines[i], label);
      if (!ok) {
        ++failures;
        ADD_FAILURE() << ok.message();
        continue;
      }
      const std::vector<int32_t> ids = p.ours->encode(lines[i]);
      const std::string want = p.sp.DecodeIds(std::vector<int>(ids.begin(), ids.end()));
      const std::string got = p.ours->decode(ids);
      if (got != want) {
        ++failures;
        ADD_FAILURE() << label << ": decode gives \"" << escape(got)
                      << "\", libsentencepiece DecodeIds \"" << escape(want) << "\"";
      }
    }
    EXPECT_EQ(failures, 0u) << name << " (" << lines.size() << " lines)";
  }
}

const std::vector<std::string> kEdgeCases = {
    "",
    " ",
    "   ",
    "\n",
    "\n\n",
    "a",
    " leading",
    "   three leading",
    "trailing ",
    "trailing three   ",
    "multiple   inner    spaces",
    "tab\there",
    "Once upon a time, there was a little girl named Lily.",
    "caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9",             // Latin-1 range
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",                      // CJK: outside the vocab
    "emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89!",                   // 4-byte characters
    "\xe2\x96\x81 literal lower one eighth block \xe2\x96\x81",  // U+2581 in the input
    "\xef\xbf\xbd replacement char",
    "bad utf8 \xff\xfe end",
    "truncated \xe2\x82",
    "overlong \xc0\xaf and surrogate \xed\xa0\x80",
    std::string("nul \0 inside", 12),
    "<s> </s> <unk> <0x41>",
    "\xe2\x84\xa2 \xe2\x80\x8a",  // the last pieces of the vocabulary
};

TEST(SpmOracle, EdgeCases) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  const Pair& p = tok512();
  for (const std::string& text : kEdgeCases) {
    EXPECT_TRUE(same_ids(p, text, "\"" + escape(text) + "\""));
  }
  // Byte fallback really happens: CJK text outside the 512 pieces becomes <0xXX> pieces.
  const std::vector<int32_t> cjk = p.ours->encode("\xe6\x97\xa5");
  ASSERT_FALSE(cjk.empty());
  EXPECT_EQ(p.ours->type(cjk.back()), SpmPieceType::kByte);
  // Decoding of valid UTF-8 matches DecodeIds.
  for (const std::string& text : {std::string("emoji \xf0\x9f\x98\x80!"), std::string("\n\n"),
                                  std::string("  a  b  "), std::string("\xe6\x97\xa5 x")}) {
    const std::vector<int32_t> ids = p.ours->encode(text);
    EXPECT_EQ(p.ours->decode(ids), p.sp.DecodeIds(std::vector<int>(ids.begin(), ids.end())))
        << escape(text);
  }
}

// Random strings over units that stress the normalizer and the merges.
TEST(SpmOracle, RandomStrings) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  const Pair& p = tok512();
  const std::vector<std::string> units = {" ",
                                          "  ",
                                          "\n",
                                          "\t",
                                          "a",
                                          "e",
                                          "t",
                                          "h",
                                          "the",
                                          "ing",
                                          " and",
                                          "Lily",
                                          ".",
                                          ",",
                                          "!",
                                          "\xc3\xa9",
                                          "\xe6\x97\xa5",
                                          "\xf0\x9f\x98\x80",
                                          "\xff",
                                          "\xe2\x82",
                                          "\xe2\x96\x81",
                                          "0",
                                          "7",
                                          std::string(1, '\0'),
                                          "<s>",
                                          "\xef\xbf\xbd",
                                          "\x80"};
  std::mt19937 rng(1234);
  for (int n = 0; n < 3000; ++n) {
    std::string text;
    const int len = static_cast<int>(rng() % 24);
    for (int i = 0; i < len; ++i) text += units[rng() % units.size()];
    const auto ok = same_ids(p, text, "random \"" + escape(text) + "\"");
    ASSERT_TRUE(ok);
  }
}

// ---------------------------------------------------------------------------------------------
// Variants of tok512.model that exercise what tok512 itself does not: unknown pieces without byte
// fallback, UNUSED pieces (resegmentation), USER_DEFINED symbols, other normalizer flags.

SpmModelProto tok512_proto() { return parse_spm_model_proto(read_file(kModelPath), kModelPath); }

void check_variant(const SpmModelProto& m, const std::string& label) {
  const std::unique_ptr<Pair> p = load_pair(test::serialize(m), label);
  ASSERT_TRUE(p);
  const std::string story = read_file(kData + "/text/tinystories_sample.txt");
  EXPECT_TRUE(same_ids(*p, story, label + " tinystories"));
  const std::string wiki = read_file(kData + "/text/wikitext-2-test.txt").substr(0, 200000);
  EXPECT_TRUE(same_ids(*p, wiki, label + " wikitext[0:200000]"));
  for (const std::string& text : kEdgeCases) {
    EXPECT_TRUE(same_ids(*p, text, label + " \"" + escape(text) + "\""));
  }
}

TEST(SpmOracle, VariantWithoutByteFallback) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  SpmModelProto m = tok512_proto();
  std::vector<SpmPiece> kept;
  for (const SpmPiece& sp : m.pieces) {
    if (sp.type != SpmPieceType::kByte) kept.push_back(sp);
  }
  m.pieces = kept;
  m.byte_fallback = false;
  check_variant(m, "no-byte-fallback");
}

TEST(SpmOracle, VariantWithUnusedPieces) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  SpmModelProto m = tok512_proto();
  int n = 0;
  for (SpmPiece& sp : m.pieces) {
    // Every third multi-character piece becomes UNUSED, "▁the" among them or not.
    if (sp.type == SpmPieceType::kNormal && sp.piece.size() >= 2 && n++ % 3 == 0) {
      sp.type = SpmPieceType::kUnused;
    }
  }
  check_variant(m, "unused");
}

TEST(SpmOracle, VariantWithUserDefinedSymbols) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  SpmModelProto m = tok512_proto();
  for (SpmPiece& sp : m.pieces) {
    if (sp.piece == "ing" || sp.piece == "\xe2\x96\x81the") sp.type = SpmPieceType::kUserDefined;
  }
  m.pieces.push_back({"<br>", 0.0f, SpmPieceType::kUserDefined});
  m.pieces.push_back({"<br", 0.0f, SpmPieceType::kUserDefined});
  m.pieces.push_back({"a b", 0.0f, SpmPieceType::kUserDefined});
  check_variant(m, "user-defined");
  const std::unique_ptr<Pair> p = load_pair(test::serialize(m), "user-defined");
  ASSERT_TRUE(p);
  EXPECT_TRUE(same_ids(*p, "x<br>y<br z<br>> singing the theme a b  a  b", "user-defined"));
}

TEST(SpmOracle, VariantsOfNormalizerFlags) {
  if (!have_data()) GTEST_SKIP() << "missing " << kModelPath;
  for (int mask = 0; mask < 16; ++mask) {
    SpmModelProto m = tok512_proto();
    m.normalizer.add_dummy_prefix = mask & 1;
    m.normalizer.remove_extra_whitespaces = mask & 2;
    m.normalizer.escape_whitespaces = mask & 4;
    m.treat_whitespace_as_suffix = mask & 8;
    check_variant(m, "normalizer flags " + std::to_string(mask));
  }
}

}  // namespace
}  // namespace slmc
