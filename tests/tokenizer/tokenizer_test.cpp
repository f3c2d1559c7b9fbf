// Tokenizers without libsentencepiece: llama2.c run.c behaviour, the byte tokenizer and its
// tokenizer.json, tok512.bin against tok512.model, loading, and every kind of bad file.
#include "compress/tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/tokenizer/llama2c_tokenizer.h"
#include "compress/tokenizer/sentencepiece.h"
#include "tests/tokenizer/model_proto_writer.h"

namespace slmc {
namespace {

namespace fs = std::filesystem;

const std::string kData = SLMC_SHARED_DATA;
const std::string kStories = kData + "/models/stories260K";
const std::string kModelPath = kStories + "/tok512.model";
const std::string kBinPath = kStories + "/tok512.bin";
const std::string kSamplePath = kData + "/text/tinystories_sample.txt";

bool have_data() { return fs::exists(kModelPath) && fs::exists(kBinPath); }

#define REQUIRE_DATA() \
  if (!have_data()) GTEST_SKIP() << "missing " << kStories

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("slmc_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name, const std::string& bytes) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  std::string path(const std::string& name = "") const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Runs `f`, which must throw slmc::Error whose message contains every one of `parts`.
template <typename F>
::testing::AssertionResult throws_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.find('\n') != std::string::npos) {
      return ::testing::AssertionFailure() << "message is not one line: " << msg;
    }
    for (const std::string& p : parts) {
      if (msg.find(p) == std::string::npos) {
        return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << msg;
      }
    }
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-slmc exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// ---------------------------------------------------------------------------------------------
// llama2.c

// run.c's encode() transcribed as literally as C++ allows: the quadratic merge loop with
// best_score starting at -1e10. The fast encoder must agree with it token for token.
std::vector<int32_t> run_c_encode(const Llama2cTokenizer& t, const std::string& text) {
  std::vector<int32_t> tokens;
  if (!text.empty()) tokens.push_back(t.lookup(" "));
  std::string buf;
  for (size_t c = 0; c < text.size(); ++c) {
    if ((text[c] & 0xC0) != 0x80) buf.clear();
    buf.push_back(text[c]);
    const char next = c + 1 < text.size() ? text[c + 1] : '\0';
    if ((next & 0xC0) == 0x80 && buf.size() < 4) continue;
    const int32_t id = t.lookup(buf);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (const char b : buf) tokens.push_back(static_cast<unsigned char>(b) + 3);
    }
    buf.clear();
  }
  while (true) {
    float best_score = -1e10;
    int32_t best_id = -1;
    int64_t best_idx = -1;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      const int32_t id = t.lookup(t.piece(tokens[i]) + t.piece(tokens[i + 1]));
      if (id != -1 && t.score(id) > best_score) {
        best_score = t.score(id);
        best_id = id;
        best_idx = static_cast<int64_t>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  return tokens;
}

const Llama2cTokenizer& tok512_bin() {
  static const auto t = load_llama2c_tokenizer(read_file(kBinPath), kBinPath);
  return *t;
}

const SentencePieceTokenizer& tok512_model() {
  static const auto t = load_sentencepiece(read_file(kModelPath), kModelPath);
  return *t;
}

TEST(Llama2c, LoadsTok512) {
  REQUIRE_DATA();
  const Llama2cTokenizer& t = tok512_bin();
  EXPECT_EQ(t.kind(), "llama2c");
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.max_token_length(), 7);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.piece(0), "<unk>");
  EXPECT_EQ(t.piece(3), "<0x00>");
  EXPECT_EQ(t.piece(258), "<0xFF>");
  EXPECT_EQ(t.source(), kBinPath);
}

// Ids printed by a scratch build of llama2.c run.c's build_tokenizer() + encode(t, text, 0, 0)
// on tok512.bin.
TEST(Llama2c, MatchesRunCOnKnownStrings) {
  REQUIRE_DATA();
  const Llama2cTokenizer& t = tok512_bin();
  EXPECT_EQ(t.encode(""), std::vector<int32_t>{});
  EXPECT_EQ(t.encode("Once upon a time, there was a little girl named Lily."),
            (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                  317, 426}));
  // Two spaces, newlines (byte tokens 13 = <0x0A>), a CJK character and an emoji (bytes + 3).
  EXPECT_EQ(t.encode("Hi  there\n\n\xe6\x97\xa5 \xf0\x9f\x98\x80!"),
            (std::vector<int32_t>{320, 417, 410, 383, 13, 13, 233, 154, 168, 410, 243, 162, 155,
                                  131, 443}));
}

TEST(Llama2c, FastEncoderEqualsLiteralRunC) {
  REQUIRE_DATA();
  const Llama2cTokenizer& t = tok512_bin();
  const std::string sample = read_file(kSamplePath);
  EXPECT_EQ(t.encode(sample), run_c_encode(t, sample));
  size_t start = 0;
  while (start < sample.size()) {
    size_t end = sample.find('\n', start);
    if (end == std::string::npos) end = sample.size();
    const std::string line = sample.substr(start, end - start);
    EXPECT_EQ(t.encode(line), run_c_encode(t, line)) << line;
    start = end + 1;
  }
  const std::vector<std::string> units = {" ",
                                          "  ",
                                          "\n",
                                          "a",
                                          "e",
                                          "th",
                                          "the",
                                          " and",
                                          "Lily",
                                          ".",
                                          "\xc3\xa9",
                                          "\xe6\x97\xa5",
                                          "\xf0\x9f\x98\x80",
                                          "\xff",
                                          "\x80",
                                          "\x80\x80\x80\x80\x80",
                                          "<0x41>",
                                          "\xe2"};
  std::mt19937 rng(7);
  for (int n = 0; n < 2000; ++n) {
    std::string text;
    const int len = static_cast<int>(rng() % 20);
    for (int i = 0; i < len; ++i) text += units[rng() % units.size()];
    ASSERT_EQ(t.encode(text), run_c_encode(t, text)) << text;
  }
}

TEST(Llama2c, DecodeFollowsRunC) {
  REQUIRE_DATA();
  const Llama2cTokenizer& t = tok512_bin();
  const int32_t once = t.lookup(" Once");
  ASSERT_GE(once, 0);
  EXPECT_EQ(t.decode_piece(t.bos_id(), once), "Once");  // leading space stripped after BOS
  EXPECT_EQ(t.decode_piece(once, once), " Once");
  EXPECT_EQ(t.decode_piece(5, 13), "\n");               // <0x0A>
  EXPECT_EQ(t.decode_piece(t.bos_id(), 3 + ' '), " ");  // a byte token keeps its space
  EXPECT_EQ(t.decode_piece(5, 258), "\xff");
  for (const int32_t control : {0, 1, 2}) EXPECT_EQ(t.decode_piece(5, control), "");
  // llama2.c keeps every space, so decode(encode(text)) is the text itself.
  const std::string sample = read_file(kSamplePath);
  EXPECT_EQ(t.decode(t.encode(sample)), sample);
  const std::string odd = "  two leading, \xe6\x97\xa5 and trailing  \n";
  EXPECT_EQ(t.decode(t.encode(odd)), odd);
  EXPECT_TRUE(throws_error([&] { t.decode_piece(1, 512); }, {kBinPath, "512"}));
  EXPECT_TRUE(throws_error([&] { t.decode_piece(1, -1); }, {kBinPath, "-1"}));
}

// tok512.bin was exported from tok512.model by llama2.c's tokenizer.py: "▁" became " ", and BOS
// and EOS were rewritten as "\n<s>\n" and "\n</s>\n".
TEST(Llama2c, Tok512BinIsTok512ModelWithSpaces) {
  REQUIRE_DATA();
  const Llama2cTokenizer& bin = tok512_bin();
  const SentencePieceTokenizer& model = tok512_model();
  ASSERT_EQ(bin.vocab_size(), model.vocab_size());
  EXPECT_EQ(bin.piece(1), "\n<s>\n");
  EXPECT_EQ(bin.piece(2), "\n</s>\n");
  EXPECT_EQ(model.piece(1), "<s>");
  EXPECT_EQ(model.piece(2), "</s>");
  for (int32_t id = 0; id < bin.vocab_size(); ++id) {
    EXPECT_EQ(bin.score(id), model.score(id)) << id;
    if (id == 1 || id == 2) continue;
    std::string want = model.piece(id);
    for (size_t at; (at = want.find("\xe2\x96\x81")) != std::string::npos;)
      want.replace(at, 3, " ");
    EXPECT_EQ(bin.piece(id), want) << id;
  }
}

// The figures of the task: tinystories_sample.txt as one string.
TEST(Llama2c, TokenCountsOfTinyStoriesSample) {
  REQUIRE_DATA();
  const std::string sample = read_file(kSamplePath);
  const std::vector<int32_t> spm = tok512_model().encode(sample);
  const std::vector<int32_t> l2c = tok512_bin().encode(sample);
  std::cout << "[ token-count ] tinystories_sample.txt (" << sample.size()
            << " bytes, one string, no BOS): SentencePiece encoder " << spm.size()
            << " tokens, llama2.c encoder " << l2c.size() << " tokens, ids "
            << (spm == l2c ? "identical" : "different") << "\n";
  // Same merges and scores; the normalizer differs only on runs of spaces and on leading or
  // trailing spaces, which this text does not have.
  EXPECT_EQ(spm, l2c);
  EXPECT_EQ(l2c.size(), 1882u);  // llama2.c run.c encode(text, bos=0, eos=0) gives 1882 too
}

// Where the two encoders part: SentencePiece's remove_extra_whitespaces (set in tok512.model)
// drops leading/trailing spaces and collapses runs; run.c keeps every space.
TEST(Llama2c, DiffersFromSentencePieceOnlyOnExtraSpaces) {
  REQUIRE_DATA();
  const std::string s = "Lily  ran";
  EXPECT_NE(tok512_model().encode(s), tok512_bin().encode(s));
  EXPECT_EQ(tok512_model().encode(s), tok512_bin().encode("Lily ran"));
  EXPECT_EQ(tok512_model().encode("  Lily ran "), tok512_bin().encode("Lily ran"));
}

// ---------------------------------------------------------------------------------------------
// SentencePiece semantics that need no oracle

TEST(SentencePiece, LoadsTok512) {
  REQUIRE_DATA();
  const auto t = load_tokenizer(kModelPath);
  EXPECT_EQ(t->kind(), "sentencepiece");
  EXPECT_EQ(t->vocab_size(), 512);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->source(), kModelPath);
  EXPECT_EQ(tok512_model().unk_id(), 0);
}

TEST(SentencePiece, DecodePieceSemantics) {
  REQUIRE_DATA();
  const SentencePieceTokenizer& t = tok512_model();
  const int32_t once = t.piece_to_id("\xe2\x96\x81Once");
  ASSERT_NE(once, t.unk_id());
  EXPECT_EQ(t.decode_piece(t.bos_id(), once), "Once");
  EXPECT_EQ(t.decode_piece(once, once), " Once");
  EXPECT_EQ(t.decode_piece(once, t.piece_to_id("<0x0A>")), "\n");
  EXPECT_EQ(t.decode_piece(t.bos_id(), t.piece_to_id("<0x20>")), " ");
  EXPECT_EQ(t.decode_piece(once, t.bos_id()), "");
  EXPECT_EQ(t.decode_piece(once, t.eos_id()), "");
  EXPECT_EQ(t.decode_piece(once, t.unk_id()), "");
  // The normalizer collapses spaces, so decode(encode()) gives the normalized text.
  EXPECT_EQ(t.decode(t.encode("  Lily   saw \xe6\x97\xa5\n\xf0\x9f\x98\x80  ")),
            "Lily saw \xe6\x97\xa5\n\xf0\x9f\x98\x80");
  EXPECT_EQ(t.normalize(" a  b "),
            "\xe2\x96\x81"
            "a\xe2\x96\x81"
            "b");
  EXPECT_TRUE(throws_error([&] { t.decode_piece(1, 512); }, {kModelPath, "512"}));
}

// ---------------------------------------------------------------------------------------------
// Byte tokenizer

TEST(ByteTokenizer, RoundTripsAllBytes) {
  const auto t = make_byte_tokenizer();
  EXPECT_EQ(t->kind(), "byte");
  EXPECT_EQ(t->vocab_size(), 258);
  EXPECT_EQ(t->bos_id(), 256);
  EXPECT_EQ(t->eos_id(), 257);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<int32_t> ids = t->encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(ids[b], b);
    EXPECT_EQ(t->decode_piece(256, b), std::string(1, static_cast<char>(b)));  // no strip
  }
  EXPECT_EQ(t->decode(ids), all);
  EXPECT_EQ(t->decode_piece(5, 256), "");
  EXPECT_EQ(t->decode_piece(5, 257), "");
  EXPECT_EQ(t->piece(256), "<s>");
  EXPECT_EQ(t->piece(' '), "\xc4\xa0");  // GPT-2's "Ġ"
  EXPECT_TRUE(throws_error([&] { t->decode_piece(0, 258); }, {"258"}));
}

TEST(ByteTokenizer, TokenizerJsonWrittenAndReloaded) {
  TempDir dir;
  const std::string path = dir.path("tokenizer.json");
  write_byte_tokenizer_json(path);
  const nlohmann::json j = nlohmann::json::parse(read_file(path));
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_TRUE(j["model"]["merges"].is_array());
  EXPECT_TRUE(j["model"]["merges"].empty());
  EXPECT_EQ(j["model"]["vocab"].size(), 258u);
  EXPECT_EQ(j["model"]["vocab"]["\xc4\xa0"], 32);  // "Ġ" is the space
  EXPECT_EQ(j["model"]["vocab"]["!"], 33);
  EXPECT_EQ(j["model"]["vocab"]["\xc4\x80"], 0);    // "Ā" is byte 0
  EXPECT_EQ(j["model"]["vocab"]["\xc5\x83"], 173);  // "Ń": the last remapped byte, 0xad
  EXPECT_EQ(j["model"]["vocab"]["\xc3\xbf"], 255);  // "ÿ" maps to itself
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["pre_tokenizer"]["add_prefix_space"], false);
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  ASSERT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(j["added_tokens"][0]["id"], 256);
  EXPECT_EQ(j["added_tokens"][0]["content"], "<s>");
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][1]["id"], 257);
  EXPECT_EQ(j["added_tokens"][1]["content"], "</s>");
  // Every byte character is distinct.
  std::set<std::string> keys;
  for (const auto& [k, v] : j["model"]["vocab"].items()) keys.insert(k);
  EXPECT_EQ(keys.size(), 258u);
  EXPECT_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));

  const auto t = load_tokenizer(path);
  EXPECT_EQ(t->kind(), "byte");
  EXPECT_EQ(t->source(), path);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(t->decode(t->encode(all)), all);
  EXPECT_EQ(t->bos_id(), 256);
}

// Any other tokenizer.json is kind "hf" (hf_tokenizer_test.cpp); kind "byte" (what .slm files
// written before kind "hf" hold) still refuses anything but slmc's own file.
TEST(ByteTokenizer, OtherTokenizerJsonIsHfNotByte) {
  TempDir dir;
  const std::string hf = dir.file("tokenizer.json", R"({
    "version": "1.0", "added_tokens": [], "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
  EXPECT_EQ(load_tokenizer(hf)->kind(), "hf");
  EXPECT_EQ(load_tokenizer(hf)->encode("ab"), (std::vector<int32_t>{2}));
  EXPECT_TRUE(throws_error([&] { load_tokenizer_from_bytes("byte", read_file(hf), "old.slm"); },
                           {"old.slm", "unsupported tokenizer.json", "merges"}));
  const std::string unigram =
      dir.file("unigram.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  EXPECT_TRUE(throws_error([&] { load_tokenizer(unigram); }, {unigram, "model.type", "Unigram"}));
  // Our own file with one vocabulary entry changed is no longer ours: read as hf, refused.
  const std::string ours = dir.path("ours.json");
  write_byte_tokenizer_json(ours);
  nlohmann::json j = nlohmann::json::parse(read_file(ours));
  j["model"]["vocab"]["!"] = 34;
  const std::string edited = dir.file("edited.json", j.dump());
  EXPECT_TRUE(throws_error([&] { load_tokenizer(edited); }, {edited, "model.vocab", "id 34"}));
  const std::string broken = dir.file("broken.json", "{\"model\": ");
  EXPECT_TRUE(throws_error([&] { load_tokenizer(broken); }, {broken, "not valid JSON"}));
}

// ---------------------------------------------------------------------------------------------
// Bad files

TEST(BadFiles, MissingEmptyOrDirectory) {
  const std::string missing = "/nonexistent/slmc/tok512.model";
  EXPECT_TRUE(throws_error([&] { load_tokenizer(missing); }, {missing}));
  TempDir dir;
  const std::string empty = dir.file("tokenizer.bin", "");
  EXPECT_TRUE(throws_error([&] { load_tokenizer(empty); }, {empty, "empty"}));
  EXPECT_TRUE(throws_error([&] { load_tokenizer(dir.path()); }, {dir.path(), "directory"}));
  EXPECT_TRUE(throws_error([&] { load_tokenizer(""); }, {"empty"}));
}

TEST(BadFiles, TruncatedModelFile) {
  REQUIRE_DATA();
  TempDir dir;
  const std::string bytes = read_file(kModelPath);
  const std::string half = dir.file("half.model", bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(throws_error([&] { load_tokenizer(half); }, {half, "malformed SentencePiece model"}));
  const std::string short1 = dir.file("short.model", bytes.substr(0, bytes.size() - 1));
  EXPECT_TRUE(throws_error([&] { load_tokenizer(short1); }, {short1, "runs past the end"}));
}

// Every prefix of tok512.model fails with an error naming the file, except the one that ends
// right before normalizer_spec: without it the model is valid, with the default normalizer.
TEST(BadFiles, EveryPrefixOfTheModel) {
  REQUIRE_DATA();
  const std::string bytes = read_file(kModelPath);
  const std::string label = "prefix-of-tok512.model";
  std::vector<size_t> loaded;
  for (size_t n = 0; n < bytes.size(); ++n) {
    try {
      load_sentencepiece(std::string_view(bytes).substr(0, n), label);
      loaded.push_back(n);
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(label), std::string::npos) << e.what();
    }
  }
  ASSERT_EQ(loaded.size(), 1u);
  // Where the top-level field 3 (normalizer_spec) starts: each top-level field here is a one-byte
  // tag and a varint length.
  size_t off = 0;
  size_t normalizer_at = 0;
  while (off < bytes.size()) {
    const int field = static_cast<uint8_t>(bytes[off]) >> 3;
    if (field == 3) normalizer_at = off;
    ++off;
    uint64_t len = 0;
    for (int shift = 0;; shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[off++]);
      len |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) break;
    }
    off += len;
  }
  EXPECT_EQ(loaded[0], normalizer_at);
  EXPECT_GT(normalizer_at, 0u);
}

TEST(BadFiles, MalformedModelBytes) {
  const std::string path = "bad.model";
  // A length-delimited piece claiming 128 bytes with 2 left.
  EXPECT_TRUE(throws_error(
      [&] {
        load_sentencepiece(std::string("\x0a\x80\x01"
                                       "ab",
                                       5),
                           path);
      },
      {path, "length 128 runs past the end", "at byte 1"}));
  // A varint that never ends.
  EXPECT_TRUE(
      throws_error([&] { load_sentencepiece(std::string(12, '\xff'), path); }, {path, "varint"}));
  // Wire type 7 does not exist; field 0 neither.
  EXPECT_TRUE(throws_error([&] { load_sentencepiece(std::string("\x0f", 1), path); },
                           {path, "wire type 7"}));
  EXPECT_TRUE(throws_error([&] { load_sentencepiece(std::string("\x02\x00", 2), path); },
                           {path, "field number 0"}));
  // An end-group tag outside a group; an unterminated group.
  EXPECT_TRUE(
      throws_error([&] { load_sentencepiece(std::string("\x0c", 1), path); }, {path, "end-group"}));
  EXPECT_TRUE(throws_error([&] { load_sentencepiece(std::string("\x0b\x10\x01", 3), path); },
                           {path, "not terminated"}));
  // A fixed32 score cut short inside a piece (offsets count from the file start).
  EXPECT_TRUE(
      throws_error([&] { load_sentencepiece(std::string("\x0a\x03\x15\x00\x00", 5), path); },
                   {path, "32-bit value runs past the end", "ModelProto.pieces", "at byte 3"}));
}

SpmModelProto tok512_proto() { return parse_spm_model_proto(read_file(kModelPath), kModelPath); }

TEST(BadFiles, UnsupportedOrInvalidModels) {
  REQUIRE_DATA();
  const std::string path = "variant.model";
  const auto load = [&](const SpmModelProto& m) { load_sentencepiece(test::serialize(m), path); };
  {
    SpmModelProto m = tok512_proto();
    m.raw_model_type = 1;
    EXPECT_TRUE(
        throws_error([&] { load(m); }, {path, "trainer_spec.model_type", "UNIGRAM", "BPE"}));
    m.raw_model_type = 9;
    EXPECT_TRUE(throws_error([&] { load(m); }, {path, "trainer_spec.model_type", "(9"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.normalizer.name = "nmt_nfkc";
    m.normalizer.precompiled_charsmap = std::string(100, 'x');
    EXPECT_TRUE(throws_error(
        [&] { load(m); }, {path, "normalizer_spec.precompiled_charsmap", "nmt_nfkc", "100 bytes"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.denormalizer.present = true;
    m.denormalizer.precompiled_charsmap = "abc";
    EXPECT_TRUE(throws_error([&] { load(m); }, {path, "denormalizer_spec.precompiled_charsmap"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.pieces[300].piece = m.pieces[299].piece;
    EXPECT_TRUE(
        throws_error([&] { load(m); }, {path, "pieces[300]", "already defined", "pieces[299]"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.pieces[0].type = SpmPieceType::kNormal;
    EXPECT_TRUE(throws_error([&] { load(m); }, {path, "no UNKNOWN piece"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.byte_fallback = false;
    EXPECT_TRUE(throws_error([&] { load(m); }, {path, "byte_fallback is false", "<0x00>"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.pieces.erase(m.pieces.begin() + 3 + 0x41);
    EXPECT_TRUE(throws_error([&] { load(m); }, {path, "no byte piece <0x41>"}));
  }
  {
    SpmModelProto m = tok512_proto();
    m.pieces[400].piece = std::string("a\0b", 3);
    EXPECT_TRUE(throws_error([&] { load(m); }, {path, "pieces[400]", "NUL"}));
  }
  {
    std::string bytes;
    std::string piece;
    test::put_bytes(&piece, 1, "x");
    test::put_int(&piece, 3, 9);
    test::put_bytes(&bytes, 1, piece);
    EXPECT_TRUE(throws_error([&] { load_sentencepiece(bytes, path); },
                             {path, "pieces[0]", "unknown type 9"}));
  }
}

// Unknown fields of every wire type, a group and a repeated trainer_spec are read as protobuf
// reads them: skipped, and merged.
TEST(BadFiles, UnknownFieldsAreSkipped) {
  REQUIRE_DATA();
  const std::string bytes = read_file(kModelPath);
  std::string extra;
  test::put_int(&extra, 100, 12345);
  test::put_tag(&extra, 101, 1);
  extra.append(8, '\x01');
  test::put_float(&extra, 102, 1.5f);
  test::put_bytes(&extra, 103, "hello");
  test::put_tag(&extra, 104, 3);  // group with a nested field
  test::put_int(&extra, 1, 7);
  test::put_tag(&extra, 104, 4);
  std::string trainer;
  test::put_int(&trainer, 99, 1);  // unknown field inside trainer_spec
  test::put_bytes(&extra, 2, trainer);
  const auto t = load_sentencepiece(extra + bytes + extra, "with-extras");
  const std::string sample = "Once upon a time, Lily saw \xe6\x97\xa5.";
  EXPECT_EQ(t->encode(sample), tok512_model().encode(sample));
}

TEST(BadFiles, TruncatedTokenizerBin) {
  REQUIRE_DATA();
  TempDir dir;
  const std::string bytes = read_file(kBinPath);
  const std::string cut = dir.file("tok512.bin", bytes.substr(0, bytes.size() - 3));
  EXPECT_TRUE(throws_error([&] { load_tokenizer(cut); }, {cut, "truncated"}));
  const std::string header = dir.file("header.bin", bytes.substr(0, 2));
  EXPECT_TRUE(throws_error([&] { load_tokenizer(header); }, {header, "max_token_length"}));
  // Every prefix that ends inside an entry fails; one ending between entries is a valid, smaller
  // vocabulary (the format has no count), as long as <unk>, BOS and EOS are there.
  std::vector<size_t> boundaries = {4};
  for (size_t off = 4; off < bytes.size();) {
    uint32_t len;
    std::memcpy(&len, bytes.data() + off + 4, 4);
    off += 8 + len;
    boundaries.push_back(off);
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    const auto at = std::find(boundaries.begin(), boundaries.end(), n);
    const bool is_boundary = at != boundaries.end();
    const size_t entries = is_boundary ? static_cast<size_t>(at - boundaries.begin()) : 0;
    if (is_boundary && entries >= 3) {
      EXPECT_EQ(load_llama2c_tokenizer(std::string_view(bytes).substr(0, n), "p")->vocab_size(),
                static_cast<int64_t>(entries));
    } else {
      ASSERT_TRUE(throws_error(
          [&] { load_llama2c_tokenizer(std::string_view(bytes).substr(0, n), "prefix.bin"); },
          {"prefix.bin"}))
          << n;
    }
  }
}

TEST(BadFiles, TokenizerBinLengthPastEof) {
  TempDir dir;
  std::string bytes;
  const auto put_i32 = [&](int32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  const auto put_f32 = [&](float v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  put_i32(7);
  for (const char* s : {"<unk>", "<s>", "</s>"}) {
    put_f32(0.0f);
    put_i32(static_cast<int32_t>(std::strlen(s)));
    bytes += s;
  }
  const std::string good = dir.file("good.bin", bytes);
  EXPECT_EQ(load_tokenizer(good)->vocab_size(), 3);
  const float zero = 0.0f;
  std::string past = bytes;
  past.append(reinterpret_cast<const char*>(&zero), 4);
  const int32_t len = 5;
  past.append(reinterpret_cast<const char*>(&len), 4);
  past += "ab";
  const std::string p = dir.file("past.bin", past);
  EXPECT_TRUE(throws_error([&] { load_tokenizer(p); },
                           {p, "token 3", "length 5", "only 2 bytes are left"}));
  std::string huge = bytes;
  const int32_t big = 1 << 30;
  huge.append(reinterpret_cast<const char*>(&zero), 4);
  huge.append(reinterpret_cast<const char*>(&big), 4);
  const std::string h = dir.file("huge.bin", huge);
  EXPECT_TRUE(throws_error([&] { load_tokenizer(h); }, {h, "1073741824", "max_token_length 7"}));
  std::string negative = bytes;
  const int32_t minus = -4;
  negative.append(reinterpret_cast<const char*>(&zero), 4);
  negative.append(reinterpret_cast<const char*>(&minus), 4);
  const std::string n = dir.file("negative.bin", negative);
  EXPECT_TRUE(throws_error([&] { load_tokenizer(n); }, {n, "negative length -4"}));
  // A checkpoint passed as a tokenizer: its header reads as lengths that make no sense.
  if (have_data()) {
    const std::string ckpt = kStories + "/stories260K.bin";
    EXPECT_TRUE(throws_error([&] { load_tokenizer(ckpt); }, {ckpt, "llama2.c tokenizer"}));
  }
  // Without " " in the vocabulary run.c has no dummy prefix; we say so instead of crashing.
  const auto t = load_tokenizer(good);
  EXPECT_TRUE(throws_error([&] { t->encode("a"); }, {good, "dummy prefix"}));
}

// ---------------------------------------------------------------------------------------------
// Finding and detecting tokenizers

TEST(FindTokenizer, OrderBesideAModel) {
  TempDir dir;
  const std::string model = dir.file("model.bin", "x");
  EXPECT_EQ(find_tokenizer_beside(model), "");
  EXPECT_EQ(find_tokenizer_beside(dir.path("missing.bin")), "");
  EXPECT_EQ(find_tokenizer_beside("/nonexistent/dir/model.bin"), "");
  dir.file("tok9.bin", "x");
  EXPECT_EQ(find_tokenizer_beside(model), dir.path("tok9.bin"));
  dir.file("tok10.bin", "x");
  EXPECT_EQ(find_tokenizer_beside(model), dir.path("tok10.bin"));  // name order
  dir.file("tok512.model", "x");
  EXPECT_EQ(find_tokenizer_beside(model), dir.path("tok512.model"));
  dir.file("tokenizer.bin", "x");
  EXPECT_EQ(find_tokenizer_beside(model), dir.path("tokenizer.bin"));
  dir.file("tokenizer.json", "x");
  EXPECT_EQ(find_tokenizer_beside(model), dir.path("tokenizer.json"));
  dir.file("tokenizer.model", "x");
  EXPECT_EQ(find_tokenizer_beside(model), dir.path("tokenizer.model"));
  EXPECT_EQ(find_tokenizer_beside(dir.path()), dir.path("tokenizer.model"));  // a HF directory
  if (have_data()) {
    EXPECT_EQ(find_tokenizer_beside(kStories + "/stories260K.bin"), kModelPath);
  }
}

TEST(FindTokenizer, DetectsFormatOfOtherNames) {
  REQUIRE_DATA();
  TempDir dir;
  const std::string model = dir.file("vocab.spm", read_file(kModelPath));
  const std::string bin = dir.file("vocab.dat", read_file(kBinPath));
  const std::string json = dir.path("vocab.tok");
  write_byte_tokenizer_json(json);
  EXPECT_EQ(load_tokenizer(model)->kind(), "sentencepiece");
  EXPECT_EQ(load_tokenizer(bin)->kind(), "llama2c");
  EXPECT_EQ(load_tokenizer(json)->kind(), "byte");
  EXPECT_EQ(load_tokenizer(kBinPath)->kind(), "llama2c");
}

}  // namespace
}  // namespace slmc
