// Writes the Hugging Face tokenizer.json (and tokenizer_config.json) that transformers'
// LlamaConverter makes of a SentencePiece BPE model, the way Llama 2 / TinyStories-style
// checkpoints ship it: BPE with byte_fallback and fuse_unk, merges from generate_merges (pieces
// ordered by score), normalizer Prepend("▁") + Replace(" ", "▁") (legacy), decoder Replace +
// ByteFallback + Fuse + Strip, and LlamaTokenizerFast's BOS template. The model is read with
// libsentencepiece, so this test input does not come from slmc's own reader.
//
// Usage: hf_from_spm MODEL OUT_DIR
#include <sentencepiece_processor.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace {

using nlohmann::ordered_json;

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// The prefix of `s` holding its first `n` code points.
std::string first_code_points(const std::string& s, size_t n) {
  size_t i = 0;
  for (size_t k = 0; k < n; ++k) {
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
  }
  return s.substr(0, i);
}

ordered_json added(int id, const std::string& content) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", true}};
}

bool write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return f.good();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: hf_from_spm MODEL OUT_DIR\n");
    return 2;
  }
  sentencepiece::SentencePieceProcessor sp;
  if (const auto st = sp.Load(argv[1]); !st.ok()) {
    std::fprintf(stderr, "hf_from_spm: %s: %s\n", argv[1], st.ToString().c_str());
    return 1;
  }
  const int n = sp.GetPieceSize();
  // LlamaConverter.vocab: <unk>, <s>, </s>, then the pieces from id 3 with their scores.
  std::vector<std::pair<std::string, float>> vocab_scores = {{"<unk>", 0}, {"<s>", 0}, {"</s>", 0}};
  for (int i = 3; i < n; ++i) vocab_scores.emplace_back(sp.IdToPiece(i), sp.GetScore(i));
  std::map<std::string, int> vocab;  // SentencePieceExtractor's {piece: id}
  for (int i = 0; i < n; ++i) vocab[sp.IdToPiece(i)] = i;

  // generate_merges(vocab, vocab_scores): every split of every piece into two vocab pieces,
  // ordered by (vocab[left], vocab[right]) within a piece, then stably by (score, len(left),
  // len(right)) descending.
  std::vector<std::tuple<std::string, std::string, float>> merges;
  for (const auto& [piece, score] : vocab_scores) {
    std::vector<std::tuple<std::string, std::string, float>> local;
    const size_t len = code_points(piece);
    for (size_t k = 1; k < len; ++k) {
      const std::string l = first_code_points(piece, k), r = piece.substr(l.size());
      if (vocab.count(l) && vocab.count(r)) local.emplace_back(l, r, score);
    }
    std::stable_sort(local.begin(), local.end(), [&](const auto& a, const auto& b) {
      return std::make_pair(vocab[std::get<0>(a)], vocab[std::get<1>(a)]) <
             std::make_pair(vocab[std::get<0>(b)], vocab[std::get<1>(b)]);
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const auto& a, const auto& b) {
    const auto ka = std::make_tuple(std::get<2>(a), code_points(std::get<0>(a)), code_points(std::get<1>(a)));
    const auto kb = std::make_tuple(std::get<2>(b), code_points(std::get<0>(b)), code_points(std::get<1>(b)));
    return ka > kb;
  });

  ordered_json bpe_vocab = ordered_json::object();
  for (size_t i = 0; i < vocab_scores.size(); ++i) bpe_vocab[vocab_scores[i].first] = i;
  ordered_json merge_list = ordered_json::array();
  for (const auto& m : merges) merge_list.push_back({std::get<0>(m), std::get<1>(m)});

  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = {added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")};
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  j["model"] = {{"type", "BPE"},          {"dropout", nullptr},       {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},       {"byte_fallback", true},    {"ignore_merges", false},
                {"vocab", bpe_vocab},     {"merges", merge_list}};
  const ordered_json config = {{"add_bos_token", true},  {"add_eos_token", false},
                               {"bos_token", "<s>"},     {"eos_token", "</s>"},
                               {"unk_token", "<unk>"},   {"legacy", true},
                               {"clean_up_tokenization_spaces", false},
                               {"tokenizer_class", "LlamaTokenizer"}};
  const std::string dir = argv[2];
  if (!write(dir + "/tokenizer.json", j.dump(2) + "\n") ||
      !write(dir + "/tokenizer_config.json", config.dump(2) + "\n")) {
    std::fprintf(stderr, "hf_from_spm: cannot write into %s\n", dir.c_str());
    return 1;
  }
  std::fprintf(stderr, "hf_from_spm: %d pieces, %zu merges -> %s/tokenizer.json\n", n, merges.size(),
               dir.c_str());
  return 0;
}
