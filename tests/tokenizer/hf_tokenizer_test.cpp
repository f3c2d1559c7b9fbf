// Hugging Face tokenizer.json pieces held to the Rust `tokenizers` crate's own unit tests (the
// expected splits and decodes below are theirs), the BPE encoder to a plain O(n^2) reference on
// random models, and every bad file to a one-line error naming the file and the key. The real
// tokenizers against Hugging Face's JS tokenizer are in hf_tokenizer_oracle_test.cpp.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/tokenizer/hf_pipeline.h"
#include "compress/tokenizer/hf_tokenizer.h"
#include "compress/tokenizer/tokenizer_internal.h"
#include "compress/tokenizer/unicode.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using slmc::testing::expect_error;
using slmc::testing::TempDir;

const std::string kOrigin = "test.json";

std::vector<std::string> pre(const std::string& spec, std::string_view s, bool at_origin = true) {
  bool byte_level = false;
  const auto p = hf::make_pre_tokenizer(json::parse(spec), hf::Where(kOrigin, "pre_tokenizer"), &byte_level);
  hf::Scratch sc;
  std::vector<std::string> out;
  p->split(s, at_origin, sc, [&](std::string_view piece, bool) { out.emplace_back(piece); });
  return out;
}

std::string norm(const std::string& spec, std::string_view s) {
  const auto n = hf::make_normalizer(json::parse(spec), hf::Where(kOrigin, "normalizer"));
  hf::Scratch sc;
  return n->apply(s, sc);
}

std::vector<std::string> dec(const std::string& spec, std::vector<std::string> tokens,
                             hf::DecodeState st = {}) {
  const auto d = hf::make_decoder(json::parse(spec), hf::Where(kOrigin, "decoder"));
  d->decode(&tokens, st);
  return tokens;
}

using Pieces = std::vector<std::string>;

// ---- pre-tokenizers (expected values: the Rust crate's tests) ---------------------------------

TEST(HfPreTokenizer, SplitEveryBehavior) {  // pre_tokenizers/split.rs `basic`
  const std::string s = "How are you doing?";
  const auto split = [&](const char* behavior) {
    return pre(std::string(R"({"type":"Split","pattern":{"Regex":"\\w+|[^\\w\\s]+"},"behavior":")") +
                   behavior + R"(","invert":true})",
               s);
  };
  EXPECT_EQ(split("Removed"), (Pieces{"How", "are", "you", "doing", "?"}));
  EXPECT_EQ(split("Isolated"), (Pieces{"How", " ", "are", " ", "you", " ", "doing", "?"}));
  EXPECT_EQ(split("MergedWithPrevious"), (Pieces{"How ", "are ", "you ", "doing", "?"}));
  EXPECT_EQ(split("MergedWithNext"), (Pieces{"How", " are", " you", " doing", "?"}));
  EXPECT_EQ(split("Contiguous"), (Pieces{"How", " ", "are", " ", "you", " ", "doing?"}));
}

TEST(HfPreTokenizer, SplitStringRegexAndInvert) {  // split.rs `regex_string`, `invert`
  const Pieces want = {"Hey,", "man!"};
  EXPECT_EQ(pre(R"({"type":"Split","pattern":{"Regex":"\\s+"},"behavior":"Removed","invert":false})", "Hey, man!"), want);
  EXPECT_EQ(pre(R"({"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false})", "Hey, man!"), want);
  EXPECT_EQ(pre(R"({"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false})", "Hello Hello Hello"),
            (Pieces{"Hello", "Hello", "Hello"}));
  EXPECT_EQ(pre(R"({"type":"Split","pattern":{"String":"Hello"},"behavior":"Removed","invert":true})", "Hello Hello Hello"),
            (Pieces{"Hello", "Hello", "Hello"}));
  // Regex metacharacters in a String pattern are literal (the crate escapes them).
  EXPECT_EQ(pre(R"({"type":"Split","pattern":{"String":"."},"behavior":"Isolated","invert":false})", "a.b"),
            (Pieces{"a", ".", "b"}));
}

TEST(HfPreTokenizer, OnigurumaWhiteSpaceIncludesNel) {
  // Oniguruma's \s (what the crate compiles) is Unicode White_Space: U+0085 is in it, U+180E is
  // not. PCRE2's \s has it the other way round, so patterns are translated.
  const std::string spec = R"({"type":"Split","pattern":{"Regex":"\\s+|[^\\s]+"},"behavior":"Isolated","invert":false})";
  EXPECT_EQ(pre(spec, "a\xc2\x85" "b"), (Pieces{"a", "\xc2\x85", "b"}));
  EXPECT_EQ(pre(spec, "a\xe1\xa0\x8e" "b"), (Pieces{"a\xe1\xa0\x8e" "b"}));
  const std::string ws = "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
                         "\\x{202F}\\x{205F}\\x{3000}";
  EXPECT_EQ(hf::onig_to_pcre2("[^\\s\\p{L}]\\s\\S\\h[\\h]"),
            "[^" + ws + "\\p{L}][" + ws + "][^" + ws + "][0-9a-fA-F][0-9a-fA-F]");
  EXPECT_EQ(hf::onig_to_pcre2("[]\\s]\\\\s[[:alpha:]\\s]"), "[]" + ws + "]\\\\s[[:alpha:]" + ws + "]");
}

TEST(HfPreTokenizer, MetaspaceSchemes) {  // pre_tokenizers/metaspace.rs
  const std::string always = R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true})";
  EXPECT_EQ(pre(always, "Hey friend!"), (Pieces{"▁Hey", "▁friend!"}));
  EXPECT_EQ(pre(always, "Hey   friend!"), (Pieces{"▁Hey", "▁", "▁", "▁friend!"}));
  const std::string first = R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false})";
  EXPECT_EQ(pre(first, "Hey my friend "), (Pieces{"▁Hey▁my▁friend▁"}));
  EXPECT_EQ(pre(first, "how▁are you", /*at_origin=*/false), (Pieces{"how▁are▁you"}));
  EXPECT_EQ(pre(first, " Hey "), (Pieces{"▁Hey▁"}));
  const std::string never = R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true})";
  EXPECT_EQ(pre(never, "Hey friend"), (Pieces{"Hey", "▁friend"}));
  // Legacy add_prefix_space; false with a prepend scheme other than never is refused.
  EXPECT_EQ(pre(R"({"type":"Metaspace","replacement":"_","add_prefix_space":true})", "a b"), (Pieces{"_a", "_b"}));
  EXPECT_EQ(pre(R"({"type":"Metaspace","replacement":"_","add_prefix_space":false})", "a b"), (Pieces{"a", "_b"}));
  expect_error([] { pre(R"({"type":"Metaspace","replacement":"_","add_prefix_space":false,"prepend_scheme":"always"})", "x"); },
               {kOrigin, "pre_tokenizer", "add_prefix_space", "always"});
  expect_error([] { pre(R"({"type":"Metaspace","replacement":"ab"})", "x"); },
               {kOrigin, "pre_tokenizer.replacement", "single character"});
}

TEST(HfPreTokenizer, DigitsAndSequence) {  // pre_tokenizers/digits.rs
  EXPECT_EQ(pre(R"({"type":"Digits","individual_digits":false})", "Hey 123 friend!"),
            (Pieces{"Hey ", "123", " friend!"}));
  EXPECT_EQ(pre(R"({"type":"Digits","individual_digits":true})", "Hey 123 friend!"),
            (Pieces{"Hey ", "1", "2", "3", " friend!"}));
  // char::is_numeric: other numerals count too (Arabic-Indic 4, superscript 2, Roman numeral).
  EXPECT_EQ(pre(R"({"type":"Digits","individual_digits":false})", "x\xd9\xa4\xc2\xb2\xe2\x85\xa0y"),
            (Pieces{"x", "\xd9\xa4\xc2\xb2\xe2\x85\xa0", "y"}));
  EXPECT_EQ(pre(R"({"type":"Sequence","pretokenizers":[
                  {"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false},
                  {"type":"Digits","individual_digits":true}]})", "ab12 c3"),
            (Pieces{"ab", "1", "2", "c", "3"}));
}

TEST(HfPreTokenizer, ByteLevelSplitsAsGpt2) {
  const std::string spec = R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true})";
  EXPECT_EQ(pre(spec, "Hello there  dear\n\nfriend's 123"),
            (Pieces{"Hello", " there", " ", " dear", "\n", "\n", "friend", "'s", " 123"}));
  const std::string prefix = R"({"type":"ByteLevel","add_prefix_space":true,"use_regex":false})";
  EXPECT_EQ(pre(prefix, "Hello there"), (Pieces{" Hello there"}));
  EXPECT_EQ(pre(prefix, " x"), (Pieces{" x"}));
  // ByteLevel maps text to bytes for the model: it must be the last pre-tokenizer.
  expect_error([] { pre(R"({"type":"Sequence","pretokenizers":[{"type":"ByteLevel"},{"type":"Digits"}]})", "x"); },
               {kOrigin, "pre_tokenizer.pretokenizers[0]", "ByteLevel must be the last"});
}

// ---- normalizers ------------------------------------------------------------------------------

TEST(HfNormalizer, EveryType) {
  EXPECT_EQ(norm(R"({"type":"Prepend","prepend":"▁"})", "hi"), "▁hi");
  EXPECT_EQ(norm(R"({"type":"Prepend","prepend":"▁"})", ""), "");  // nothing to prepend to
  EXPECT_EQ(norm(R"({"type":"Replace","pattern":{"String":" "},"content":"▁"})", " a  b "), "▁a▁▁b▁");
  EXPECT_EQ(norm(R"({"type":"Replace","pattern":{"Regex":" {2,}"},"content":"▁"})", "a  b   c d"), "a▁b▁c d");
  EXPECT_EQ(norm(R"({"type":"Strip","strip_left":true,"strip_right":false})", "\t\xe3\x80\x80 a \n"), "a \n");
  EXPECT_EQ(norm(R"({"type":"Strip","strip_left":false,"strip_right":true})", " a \xc2\xa0\n"), " a");
  EXPECT_EQ(norm(R"({"type":"Lowercase"})", "HeLLo ÀÉ"), "hello àé");
  // Final sigma and dotted capital I, as Rust's str::to_lowercase.
  EXPECT_EQ(norm(R"({"type":"Lowercase"})", "ΟΔΟΣ ΣΑ"), "οδος σα");
  EXPECT_EQ(norm(R"({"type":"Lowercase"})", "\xc4\xb0"), "i\xcc\x87");
  EXPECT_EQ(norm(R"({"type":"NFC"})", "e\xcc\x81"), "\xc3\xa9");
  EXPECT_EQ(norm(R"({"type":"NFD"})", "\xc3\xa9"), "e\xcc\x81");
  EXPECT_EQ(norm(R"({"type":"NFKC"})", "\xef\xac\x81 \xe2\x91\xa0"), "fi 1");  // ligature fi, circled 1
  EXPECT_EQ(norm(R"({"type":"NFKD"})", "\xef\xac\x81\xc3\xa9"), "fie\xcc\x81");
  EXPECT_EQ(norm(R"({"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},
                  {"type":"Replace","pattern":{"String":" "},"content":"▁"}]})", "a b"), "▁a▁b");
}

// ---- decoders (expected values: the crate's tests) --------------------------------------------

TEST(HfDecoder, ByteFallback) {  // decoders/byte_fallback.rs
  const std::string bf = R"({"type":"ByteFallback"})";
  EXPECT_EQ(dec(bf, {"Hey", "friend!"}), (Pieces{"Hey", "friend!"}));
  EXPECT_EQ(dec(bf, {"<0x61>"}), (Pieces{"a"}));
  EXPECT_EQ(dec(bf, {"<0xE5>"}), (Pieces{"\xef\xbf\xbd"}));
  EXPECT_EQ(dec(bf, {"<0xE5>", "<0x8f>"}), (Pieces{"\xef\xbf\xbd", "\xef\xbf\xbd"}));
  EXPECT_EQ(dec(bf, {"<0xE5>", "<0x8f>", "<0xab>"}), (Pieces{"叫"}));
  EXPECT_EQ(dec(bf, {"<0xE5>", "<0x8f>", "<0xab>", "a"}), (Pieces{"叫", "a"}));
  EXPECT_EQ(dec(bf, {"<0xE5>", "<0x8f>", "a"}), (Pieces{"\xef\xbf\xbd", "\xef\xbf\xbd", "a"}));
  hf::DecodeState stream;
  stream.stream = true;  // streaming passes the raw byte on
  EXPECT_EQ(dec(bf, {"<0xE5>"}, stream), (Pieces{"\xe5"}));
}

TEST(HfDecoder, StripMetaspaceFuseReplaceByteLevel) {
  EXPECT_EQ(dec(R"({"type":"Strip","content":"H","start":1,"stop":0})", {"Hey", " friend!", "HHH"}),
            (Pieces{"ey", " friend!", "HH"}));  // decoders/strip.rs
  EXPECT_EQ(dec(R"({"type":"Strip","content":"y","start":0,"stop":1})", {"Hey", " friend!"}),
            (Pieces{"He", " friend!"}));
  EXPECT_EQ(dec(R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"always"})", {"▁Hey", "▁friend!"}),
            (Pieces{"Hey", " friend!"}));  // metaspace.rs `decode`
  EXPECT_EQ(dec(R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"never"})", {"▁Hey", "▁friend!"}),
            (Pieces{" Hey", " friend!"}));
  EXPECT_EQ(dec(R"({"type":"Fuse"})", {"a", "b", "c"}), (Pieces{"abc"}));
  EXPECT_EQ(dec(R"({"type":"Replace","pattern":{"String":"▁"},"content":" "})", {"▁a▁", "b"}), (Pieces{" a ", "b"}));
  // ByteLevel: GPT-2 characters back to bytes, across tokens, malformed UTF-8 as U+FFFD; a token
  // with a character outside the alphabet keeps its own bytes.
  EXPECT_EQ(dec(R"({"type":"ByteLevel"})", {"\xc4\xa0hello", "\xc3\xa4", "\xc2\xb8", "\xc2\xa4"}),
            (Pieces{" hello\xe4\xb8\xa4"}));
  EXPECT_EQ(dec(R"({"type":"ByteLevel"})", {"\xc3\xbf", "a"}), (Pieces{"\xef\xbf\xbd" "a"}));
  EXPECT_EQ(dec(R"({"type":"ByteLevel"})", {"<|end|>", "a b"}), (Pieces{"<|end|>a b"}));
  hf::DecodeState stream;
  stream.stream = true;
  EXPECT_EQ(dec(R"({"type":"ByteLevel"})", {"\xc3\xa4"}, stream), (Pieces{"\xe4"}));
  // Llama 2's decoder: Strip after Fuse acts on the whole text, so a stream strips only its start.
  const std::string llama2 = R"({"type":"Sequence","decoders":[
      {"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},
      {"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]})";
  EXPECT_EQ(dec(llama2, {"▁Hello", "▁world", "<0x21>"}), (Pieces{"Hello world!"}));
  EXPECT_EQ(dec(llama2, {"▁world"}, stream), (Pieces{"world"}));
  stream.first = false;
  EXPECT_EQ(dec(llama2, {"▁world"}, stream), (Pieces{" world"}));
}

TEST(HfPipeline, UnknownTypesNameTheKey) {
  expect_error([] { norm(R"({"type":"BertNormalizer"})", ""); },
               {kOrigin, "normalizer.type", "\"BertNormalizer\"", "not supported", "NFC"});
  expect_error([] { pre(R"({"type":"Whitespace"})", ""); },
               {kOrigin, "pre_tokenizer.type", "\"Whitespace\"", "Split"});
  expect_error([] { dec(R"({"type":"WordPiece"})", {}); },
               {kOrigin, "decoder.type", "\"WordPiece\"", "ByteFallback"});
  expect_error([] { pre(R"({"type":"Split","pattern":{"Regex":"(a"},"behavior":"Isolated","invert":false})", ""); },
               {kOrigin, "pre_tokenizer.pattern.Regex", "does not compile"});
  expect_error([] { pre(R"({"type":"Split","pattern":{"Regex":"a"},"behavior":"Sideways","invert":false})", ""); },
               {kOrigin, "pre_tokenizer.behavior", "Sideways", "Isolated"});
  expect_error([] { pre(R"({"type":"Split","pattern":{"Glob":"*"},"behavior":"Isolated"})", ""); },
               {kOrigin, "pre_tokenizer.pattern", "String"});
  expect_error([] { norm(R"({"type":"Sequence","normalizers":[{"type":"NFC"},{"kind":"NFD"}]})", ""); },
               {kOrigin, "normalizer.normalizers[1]", "missing key \"type\""});
}

// ---- whole tokenizers -------------------------------------------------------------------------

// A tokenizer.json: BPE over `vocab` with `merges`, other parts as given (null when absent).
ordered_json tokenizer_json(const ordered_json& vocab, const ordered_json& merges,
                            const ordered_json& parts = ordered_json::object()) {
  ordered_json j;
  j["version"] = "1.0";
  j["added_tokens"] = parts.value("added_tokens", ordered_json::array());
  for (const char* k : {"normalizer", "pre_tokenizer", "post_processor", "decoder"})
    j[k] = parts.contains(k) ? parts[k] : ordered_json(nullptr);
  ordered_json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                        {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                        {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false}};
  if (parts.contains("model")) model.update(parts["model"]);
  model["vocab"] = vocab;
  model["merges"] = merges;
  j["model"] = model;
  return j;
}

std::unique_ptr<HfTokenizer> make(const ordered_json& j, const HfTokenizerConfig& cfg = {}) {
  return std::make_unique<HfTokenizer>(j.dump(), cfg, kOrigin);
}

// One token per printable ASCII character (ids 0..94 for ' '..'~'), then `extra` tokens.
ordered_json char_vocab(const std::vector<std::string>& extra = {}) {
  ordered_json v = ordered_json::object();
  int id = 0;
  for (char c = ' '; c <= '~'; ++c) v[std::string(1, c)] = id++;
  for (const std::string& e : extra) v[e] = id++;
  return v;
}

std::vector<int32_t> chars(const std::string& s) {
  std::vector<int32_t> ids;
  for (const char c : s) ids.push_back(c - ' ');
  return ids;
}

std::vector<int32_t> cat(std::vector<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

ordered_json added(int id, const std::string& content, bool special, ordered_json opts = {}) {
  ordered_json t = {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                    {"rstrip", false}, {"normalized", !special}, {"special", special}};
  if (!opts.is_null()) t.update(opts);
  return t;
}

TEST(HfAddedTokens, OptionsAsTheCrate) {  // tokenizer/added_vocabulary.rs `options_use_cases`
  const ordered_json vocab = char_vocab({"my", "name", "ony", "[CLS]", "[SEP]"});
  const int my = 95, name = 96, ony = 97, cls = 98, sep = 99;
  const ordered_json parts = {
      {"normalizer", {{"type", "Lowercase"}}},
      {"added_tokens",
       {added(my, "my", false, {{"lstrip", true}, {"rstrip", true}}), added(name, "name", false),
        added(ony, "ony", false, {{"single_word", true}}), added(cls, "[CLS]", true),
        added(sep, "[SEP]", true)}}};
  const auto t = make(tokenizer_json(vocab, ordered_json::array(), parts));
  // "[CLS]", " my " (normalized, both spaces taken by lstrip/rstrip), "name", then
  // " is anthony " as text ("ony" is not a single word there), "[SEP]".
  EXPECT_EQ(t->encode("[CLS] My name is Anthony [SEP]"),
            cat({{cls, my, name}, chars(" is anthony "), {sep}}));
}

TEST(HfAddedTokens, SingleWordLstripRstripLongestFirst) {
  const ordered_json vocab = char_vocab({"<mask>", "<m", "<mask>x"});
  const int mask = 95, m = 96, maskx = 97;
  // added_vocabulary.rs `test_single_word_is_correct`.
  auto t = make(tokenizer_json(vocab, ordered_json::array(),
                               {{"added_tokens", {added(mask, "<mask>", false, {{"single_word", true}})}}}));
  EXPECT_EQ(t->encode("<mask> My name <mask> A<mask> <mask>ony <mask>"),
            cat({{mask}, chars(" My name "), {mask}, chars(" A<mask> <mask>ony "), {mask}}));
  // `test_lstrip_unicode_space`: lstrip and rstrip take any White_Space, never overlapping.
  t = make(tokenizer_json(vocab, ordered_json::array(),
                          {{"added_tokens", {added(mask, "<mask>", false,
                                                   {{"single_word", true}, {"lstrip", true}, {"rstrip", true}})}}}));
  EXPECT_EQ(t->encode("Hi <mask> there\t<mask>\t<mask>\xe2\x80\x80"), cat({chars("Hi"), {mask}, chars("there"), {mask}, {mask}}));
  // Longest match first at the leftmost position; special tokens match inside words.
  t = make(tokenizer_json(vocab, ordered_json::array(),
                          {{"added_tokens", {added(mask, "<mask>", true), added(m, "<m", true), added(maskx, "<mask>x", true)}}}));
  EXPECT_EQ(t->encode("a<mask>xb<mask><mas"), cat({chars("a"), {maskx}, chars("b"), {mask}, {m}, chars("as")}));
}

// The crate's BPE, transcribed plainly: repeatedly merge the adjacent pair of lowest rank
// (leftmost on ties) until none has a rank. O(n^2), no heap, no cache, no cutting.
std::vector<int32_t> reference_bpe(std::vector<std::string> sym, const std::map<std::string, int32_t>& vocab,
                                   const std::map<std::pair<std::string, std::string>, size_t>& rank) {
  while (sym.size() > 1) {
    size_t best = SIZE_MAX, at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      const auto it = rank.find({sym[i], sym[i + 1]});
      if (it != rank.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == SIZE_MAX) break;
    sym[at] += sym[at + 1];
    sym.erase(sym.begin() + static_cast<long>(at) + 1);
  }
  std::vector<int32_t> ids;
  for (const std::string& s : sym) ids.push_back(vocab.at(s));
  return ids;
}

// Random vocabularies grown by merges (some pairs listed twice, some tokens reachable by two
// splits), random words long enough to be cut into chunks: the encoder equals the reference.
TEST(HfBpe, EqualsPlainReferenceOnRandomModels) {
  std::mt19937 rng(7);
  for (int model = 0; model < 40; ++model) {
    const bool byte_level = model % 2 == 1;
    // Units: characters (some multibyte), or bytes seen through GPT-2's alphabet. 'z' (or byte
    // 'z') never takes part in a merge, so long words have places to be cut.
    const std::vector<std::string> alphabet =
        byte_level ? std::vector<std::string>{"a", "b", "c", "d", "\xc4\xa0", "z"}
                   : std::vector<std::string>{"a", "b", "\xc3\xa9", "\xe4\xb8\xad", "d", "z"};
    std::vector<std::string> tokens = alphabet;
    std::map<std::string, int32_t> vocab;
    for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = static_cast<int32_t>(i);
    std::vector<std::pair<std::string, std::string>> merges;
    for (int k = 0; k < 60; ++k) {
      const std::string a = tokens[rng() % tokens.size()];
      const std::string b = tokens[rng() % tokens.size()];
      if (a.find('z') != std::string::npos || b.find('z') != std::string::npos) continue;
      if (a.size() + b.size() > 12) continue;
      merges.emplace_back(a, b);
      if (!vocab.count(a + b)) {
        vocab[a + b] = static_cast<int32_t>(tokens.size());
        tokens.push_back(a + b);
      }
      if (rng() % 8 == 0) merges.emplace_back(a, b);  // listed twice: the later rank counts
    }
    std::map<std::pair<std::string, std::string>, size_t> rank;
    for (size_t i = 0; i < merges.size(); ++i) rank[merges[i]] = i;
    ordered_json v = ordered_json::object();
    for (const auto& [t, id] : vocab) v[t] = id;
    ordered_json m = ordered_json::array();
    for (const auto& [a, b] : merges) m.push_back(model % 4 < 2 ? ordered_json{a, b} : ordered_json(a + " " + b));
    ordered_json parts = ordered_json::object();
    if (byte_level) parts["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
    const auto t = make(tokenizer_json(v, m, parts));
    for (int w = 0; w < 60; ++w) {
      const size_t len = 1 + rng() % (w % 3 == 0 ? 120 : 12);
      std::vector<std::string> units;
      std::string word;
      for (size_t i = 0; i < len; ++i) {
        const std::string& u = alphabet[rng() % alphabet.size()];
        units.push_back(u);
        word += byte_level ? std::string(u == "\xc4\xa0" ? " " : u) : u;
      }
      ASSERT_EQ(t->encode(word), reference_bpe(units, vocab, rank)) << "model " << model << " word " << word;
      ASSERT_EQ(t->encode(word), reference_bpe(units, vocab, rank)) << "cached, model " << model;
    }
  }
}

TEST(HfBpe, ModelOptions) {
  // ignore_merges: a word the vocabulary holds is one token even where merges would not make it.
  ordered_json v = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  auto t = make(tokenizer_json(v, {"b c", "a bc"}));
  EXPECT_EQ(t->encode("abc"), (std::vector<int32_t>{5}));
  t = make(tokenizer_json(v, {"a b"}));
  EXPECT_EQ(t->encode("abc"), (std::vector<int32_t>{3, 2}));
  t = make(tokenizer_json(v, {"a b"}, {{"model", {{"ignore_merges", true}}}}));
  EXPECT_EQ(t->encode("abc"), (std::vector<int32_t>{5}));
  // continuing_subword_prefix / end_of_word_suffix, as GPT-1 style files use them.
  ordered_json vp = {{"a", 0}, {"##b", 1}, {"##c</w>", 2}, {"ab", 3}, {"ab##c</w>", 4}, {"c</w>", 5}, {"b", 6}};
  t = make(tokenizer_json(vp, {"a ##b"}, {{"model", {{"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"}}}}));
  EXPECT_EQ(t->encode("abc"), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(t->encode("c"), (std::vector<int32_t>{5}));
  // Unknown characters: unk (fused or not), byte fallback, or dropped without an unk token.
  ordered_json vu = {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA9>", 3}};
  t = make(tokenizer_json(vu, ordered_json::array(), {{"model", {{"unk_token", "<unk>"}, {"fuse_unk", true}}}}));
  EXPECT_EQ(t->encode("axya"), (std::vector<int32_t>{1, 0, 1}));
  t = make(tokenizer_json(vu, ordered_json::array(), {{"model", {{"unk_token", "<unk>"}, {"fuse_unk", false}}}}));
  EXPECT_EQ(t->encode("axya"), (std::vector<int32_t>{1, 0, 0, 1}));
  t = make(tokenizer_json(vu, ordered_json::array(), {{"model", {{"unk_token", "<unk>"}, {"byte_fallback", true}}}}));
  EXPECT_EQ(t->encode("a\xc3\xa9x"), (std::vector<int32_t>{1, 2, 3, 0}));  // x has no byte token
  t = make(tokenizer_json(vu, ordered_json::array()));
  EXPECT_EQ(t->encode("axa"), (std::vector<int32_t>{1, 1}));
}

// A Llama 2 style file (LlamaConverter, legacy): Prepend + Replace normalizer, byte fallback,
// Replace + ByteFallback + Fuse + Strip decoder, BOS template.
ordered_json llama2_style() {
  ordered_json v = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v[name] = 3 + b;
  }
  int id = 259;
  for (const char* t : {"▁", "H", "e", "l", "o", "w", "r", "d", "▁H", "el", "lo", "ell", "ello", "▁Hello", "▁w", "or", "▁wor", "ld", "▁world"})
    v[t] = id++;
  const ordered_json merges = {"▁ H", "e l", "el l", "ell o", "▁H ello", "▁ w", "o r", "▁w or", "l d", "▁wor ld"};
  return tokenizer_json(v, merges, {
      {"added_tokens", {added(0, "<unk>", true), added(1, "<s>", true), added(2, "</s>", true)}},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "▁"}},
                      {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
      {"post_processor", {{"type", "TemplateProcessing"},
                          {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                   {{"type", "ByteFallback"}}, {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model", {{"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}}}});
}

TEST(HfTokenizerTest, Llama2StyleEncodeDecodeAndStream) {
  const auto t = make(llama2_style());
  const int hello = 272, world = 277;
  EXPECT_EQ(t->encode("Hello world"), (std::vector<int32_t>{hello, world}));
  EXPECT_EQ(t->encode_with_specials("Hello world"), (std::vector<int32_t>{1, hello, world}));
  EXPECT_EQ(t->bos_id(), 1);  // from the template
  const std::string text = "Hello world! \xe4\xb8\xad  Hello";
  const std::vector<int32_t> ids = t->encode(text);
  EXPECT_EQ(t->decode(ids), text);
  EXPECT_EQ(t->decode(t->encode_with_specials(text)), text);  // skips <s>
  EXPECT_EQ(t->decode_with_specials(t->encode_with_specials(text)), "<s> " + text);  // Strip acts on the whole text
  // Streaming one token at a time gives the same bytes.
  std::string streamed;
  int32_t prev = t->bos_id();
  for (const int32_t id : ids) {
    streamed += t->decode_piece(prev, id);
    prev = id;
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(t->decode_piece(1, 2), "");  // control tokens give nothing
  expect_error([&] { t->decode_piece(1, 300); }, {kOrigin, "300", "out of range"});
  // The GGUF view.
  const HfVocabInfo info = t->vocab_info();
  EXPECT_FALSE(info.byte_level);
  ASSERT_EQ(info.tokens.size(), 278u);
  EXPECT_EQ(info.types[0], HfVocabInfo::kControl);  // <unk> is a special added token here
  EXPECT_EQ(info.types[1], HfVocabInfo::kControl);
  EXPECT_EQ(info.types[3 + 0x41], HfVocabInfo::kByte);
  EXPECT_EQ(info.types[hello], HfVocabInfo::kNormal);
  EXPECT_EQ(info.tokens[hello], "▁Hello");
  EXPECT_EQ(info.merges.front(), (std::pair<std::string, std::string>{"▁", "H"}));
  EXPECT_EQ(info.merges.size(), 10u);
  EXPECT_TRUE(info.add_bos);
  EXPECT_FALSE(info.add_eos);
  EXPECT_EQ(info.unk_id, 0);
}

TEST(HfTokenizerTest, ByteLevelStreamAndConfig) {
  ordered_json v = ordered_json::object();
  for (int b = 0; b < 256; ++b) v[tokenizer_internal::byte_alphabet()[b]] = b;
  v["\xc4\xa0" "a"] = 256;
  const ordered_json parts = {
      {"added_tokens", {added(257, "<|bos|>", true), added(258, "<|eos|>", true), added(259, "<|eot|>", true)}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  HfTokenizerConfig cfg;
  cfg.bos_token = "<|bos|>";
  cfg.eos_token = "<|eos|>";
  cfg.eos_token_ids = {259, 258};
  const auto t = make(tokenizer_json(v, {"\xc4\xa0 a"}, parts), cfg);
  EXPECT_EQ(t->bos_id(), 257);
  EXPECT_EQ(t->eos_id(), 258);
  EXPECT_EQ(t->eos_ids(), (std::vector<int32_t>{258, 259}));
  EXPECT_EQ(t->special_ids(), (std::vector<int32_t>{257, 258, 259}));
  const std::string text = "a a \xe4\xb8\xad<|eot|>\xf0\x9f\x98\x80";
  const auto ids = t->encode(text);
  EXPECT_EQ(ids[1], 256);  // " a"
  EXPECT_EQ(t->decode_with_specials(ids), text);
  EXPECT_EQ(t->decode(ids), "a a \xe4\xb8\xad\xf0\x9f\x98\x80");
  std::string streamed;  // bytes of a character arrive over several tokens
  for (const int32_t id : ids) streamed += t->decode_piece(257, id);
  EXPECT_EQ(streamed, "a a \xe4\xb8\xad\xf0\x9f\x98\x80");
  EXPECT_TRUE(t->vocab_info().byte_level);
  // Malformed UTF-8 is read as U+FFFD per maximal ill-formed subsequence.
  EXPECT_EQ(t->decode(t->encode("a\xff" "b\xe2\x82" "c\xf0\x9f\x98")),
            "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd");
  // Two threads at once give the same ids (one uses the cache, the other may not).
  std::string big;
  for (int i = 0; i < 2000; ++i) big += "a \xe4\xb8\xad" + std::to_string(i) + " ";
  const auto want = t->encode(big);
  std::vector<int32_t> r1, r2;
  std::thread a([&] { r1 = t->encode(big); });
  std::thread b([&] { r2 = t->encode(big); });
  a.join();
  b.join();
  EXPECT_EQ(r1, want);
  EXPECT_EQ(r2, want);
}

// ---- files: the config beside tokenizer.json, the .slm blob, the byte kind ---------------------

TEST(HfFiles, DirectoryConfigBlobAndByteKind) {
  TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  slmc::testing::write_bytes(path, llama2_style().dump());
  slmc::testing::write_bytes(dir.file("tokenizer_config.json"),
                             R"({"add_bos_token": true, "bos_token": {"__type": "AddedToken", "content": "<s>"},
                                 "eos_token": "</s>", "pad_token": null, "model_max_length": 1e30})");
  slmc::testing::write_bytes(dir.file("generation_config.json"), R"({"eos_token_id": [2, 0]})");
  const auto t = load_tokenizer(path);
  EXPECT_EQ(t->kind(), "hf");
  EXPECT_EQ(t->source(), path);
  EXPECT_EQ(t->eos_ids(), (std::vector<int32_t>{2, 0}));
  // The blob rebuilds the same tokenizer without the directory, and is deterministic.
  const std::string blob = t->blob();
  EXPECT_EQ(blob.rfind("slmc-hf-tokenizer 1\n{\"add_bos_token\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"eos_token_ids\":[2,0]}\n", 0), 0u);
  EXPECT_EQ(load_tokenizer(path)->blob(), blob);
  const auto r = load_tokenizer_from_bytes("hf", blob, "m.slm (embedded tokenizer)");
  EXPECT_EQ(r->blob(), blob);
  EXPECT_EQ(r->eos_ids(), t->eos_ids());
  EXPECT_EQ(r->bos_id(), 1);
  EXPECT_EQ(r->encode("Hello world"), t->encode("Hello world"));
  expect_error([] { load_tokenizer_from_bytes("hf", "{}", "m.slm"); }, {"m.slm", "slmc-hf-tokenizer"});
  expect_error([] { load_tokenizer_from_bytes("hf", "slmc-hf-tokenizer 1\n{\"bos_token\": 5}\n{}", "m.slm"); },
               {"m.slm (config line)", "bos_token", "must be a string"});
  // Bad config files name the file and the key.
  slmc::testing::write_bytes(dir.file("generation_config.json"), R"({"eos_token_id": [2, "x"]})");
  expect_error([&] { load_tokenizer(path); }, {dir.file("generation_config.json"), "eos_token_id[1]"});
  slmc::testing::write_bytes(dir.file("generation_config.json"), R"({"eos_token_id": 999})");
  expect_error([&] { load_tokenizer(path); }, {"generation_config.json eos_token_id 999", "out of range"});
  slmc::testing::write_bytes(dir.file("generation_config.json"), "{}");
  slmc::testing::write_bytes(dir.file("tokenizer_config.json"), R"({"eos_token": "<nope>"})");
  expect_error([&] { load_tokenizer(path); }, {path, "eos_token", "\"<nope>\"", "not a token"});
  slmc::testing::write_bytes(dir.file("tokenizer_config.json"), R"({"add_bos_token": "yes"})");
  expect_error([&] { load_tokenizer(path); }, {dir.file("tokenizer_config.json"), "add_bos_token", "true or false"});
  // slmc's own byte-level tokenizer.json keeps kind "byte" (and .slm files holding it load).
  const std::string byte_path = dir.file("byte.json");
  write_byte_tokenizer_json(byte_path);
  EXPECT_EQ(load_tokenizer(byte_path)->kind(), "byte");
  expect_error([&] { load_tokenizer_from_bytes("byte", llama2_style().dump(), "old.slm"); },
               {"old.slm", "unsupported tokenizer.json"});
}

// ---- bad tokenizer.json files: exit 2 naming the file and the key ------------------------------

TEST(HfBadFiles, EveryProblemNamesFileAndKey) {
  const ordered_json good = llama2_style();
  int line = 0;
  const auto bad = [&](const std::function<void(ordered_json&)>& edit, std::initializer_list<std::string> parts) {
    SCOPED_TRACE("case " + std::to_string(++line));
    ordered_json j = good;
    edit(j);
    expect_error([&] { make(j); }, parts);
  };
  expect_error([&] { HfTokenizer(good.dump().substr(0, good.dump().size() / 2), {}, kOrigin); }, {kOrigin, "not valid JSON"});
  expect_error([&] { HfTokenizer("{\"model\": {\"type\": \"BPE\"}, \"model\": {}}", {}, kOrigin); },
               {kOrigin, "duplicate key \"model\""});
  bad([](ordered_json& j) { j["model"]["merges"].push_back("▁ zz"); },
      {kOrigin, "model.merges[10]", "\"zz\"", "not in model.vocab"});
  bad([](ordered_json& j) { j["model"]["merges"].push_back("H d"); },
      {kOrigin, "model.merges[10]", "\"Hd\"", "not in model.vocab"});
  bad([](ordered_json& j) { j["model"]["merges"].push_back("a b c"); }, {kOrigin, "model.merges[10]", "one space"});
  bad([](ordered_json& j) { j["model"]["merges"].push_back(ordered_json{1, 2}); }, {kOrigin, "model.merges[10]"});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = 1 << 24; }, {kOrigin, "model.vocab[\"x\"]", "16777216", "outside"});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = -1; }, {kOrigin, "model.vocab[\"x\"]", "-1"});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = 3.3e64; }, {kOrigin, "model.vocab[\"x\"]", "outside"});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = 2.5; }, {kOrigin, "model.vocab[\"x\"]", "not an integer"});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = 5000; }, {kOrigin, "model.vocab", "largest id is 5000"});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = 7; }, {kOrigin, "model.vocab", "id 7", "\"x\""});
  bad([](ordered_json& j) { j["model"]["vocab"]["x"] = "7"; }, {kOrigin, "model.vocab[\"x\"]", "integer"});
  bad([](ordered_json& j) { j["added_tokens"].push_back(added(1, "<t>", true)); }, {kOrigin, "added_tokens[3]", "id 1", "<s>"});
  bad([](ordered_json& j) { j["added_tokens"].push_back(added(300, "<s>", true)); }, {kOrigin, "added_tokens[3]", "\"<s>\"", "id 1"});
  bad([](ordered_json& j) { j["added_tokens"].push_back(added(100000, "<far>", true)); }, {kOrigin, "added_tokens", "100000"});
  bad([](ordered_json& j) { j["model"]["type"] = "Unigram"; }, {kOrigin, "model.type", "\"Unigram\"", "not supported"});
  bad([](ordered_json& j) { j["model"]["type"] = "WordPiece"; }, {kOrigin, "model.type", "\"WordPiece\""});
  bad([](ordered_json& j) { j["model"]["unk_token"] = "<nope>"; }, {kOrigin, "model.unk_token", "<nope>"});
  bad([](ordered_json& j) { j["model"]["dropout"] = 0.1; }, {kOrigin, "model.dropout", "random"});
  bad([](ordered_json& j) { j["model"].erase("merges"); }, {kOrigin, "model", "missing key \"merges\""});
  bad([](ordered_json& j) { j["normalizer"] = {{"type", "Precompiled"}}; }, {kOrigin, "normalizer.type", "Precompiled"});
  bad([](ordered_json& j) { j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}}; }, {kOrigin, "pre_tokenizer.type", "BertPreTokenizer"});
  bad([](ordered_json& j) { j["decoder"]["decoders"][1] = {{"type", "CTC"}}; }, {kOrigin, "decoder.decoders[1].type", "CTC"});
  bad([](ordered_json& j) { j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "[\\p{L}"}}}, {"behavior", "Isolated"}}; },
      {kOrigin, "pre_tokenizer.pattern.Regex", "does not compile"});
  bad([](ordered_json& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; }, {kOrigin, "post_processor.type", "RobertaProcessing"});
  bad([](ordered_json& j) { j["post_processor"]["single"][0]["SpecialToken"]["id"] = "<x>"; },
      {kOrigin, "post_processor.single[0].SpecialToken.id", "<x>"});
  bad([](ordered_json& j) { j["post_processor"]["special_tokens"]["<s>"]["ids"] = {999}; },
      {kOrigin, "post_processor.special_tokens.<s>.ids[0]", "999"});
  bad([](ordered_json& j) { j["model"]["vocab"] = ordered_json::array(); }, {kOrigin, "model.vocab", "object"});
  expect_error([&] { HfTokenizer("[1, 2]", {}, kOrigin); }, {kOrigin, "top level must be an object"});
}

TEST(HfUnicode, MaximalSubpartReplacement) {
  // The WHATWG/Unicode "maximal subpart" practice: one U+FFFD per ill-formed subsequence.
  const std::string r = "\xef\xbf\xbd";
  const auto fix = [](const std::string& s) {
    std::string out;
    return unicode::to_valid(s, &out) ? out : s;
  };
  EXPECT_EQ(fix("ok"), "ok");
  EXPECT_EQ(fix("\xc0\xaf"), r + r);              // C0 is never a lead byte
  EXPECT_EQ(fix("\xe2\x82("), r + "(");            // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(fix("\xed\xa0\x80"), r + r + r);       // surrogate: ED then A0 out of range
  EXPECT_EQ(fix("\xf4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(fix("\xf0\x9f\x98"), r);               // truncated at the end
  EXPECT_EQ(fix("a\x80" "b"), "a" + r + "b");
}

}  // namespace
}  // namespace slmc
