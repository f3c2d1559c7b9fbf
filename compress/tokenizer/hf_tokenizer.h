// Hugging Face `tokenizer.json` tokenizers (BPE models: GPT-2/Llama 3/Qwen byte-level files and
// Llama 2/Mistral/Gemma SentencePiece-style files with byte fallback), read natively with the
// semantics of Hugging Face's Rust `tokenizers` crate, plus the few fields of
// tokenizer_config.json and generation_config.json that matter. Kind "hf".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compress/tokenizer/tokenizer.h"

namespace slmc {

// The fields of tokenizer_config.json and generation_config.json slmc uses.
struct HfTokenizerConfig {
  std::optional<bool> add_bos_token, add_eos_token;              // tokenizer_config.json
  std::optional<std::string> bos_token, eos_token, pad_token;    // tokenizer_config.json
  std::vector<int64_t> eos_token_ids;  // generation_config.json eos_token_id (an int or a list)

  // Reads tokenizer_config.json and generation_config.json in `dir` when they are there
  // (a missing file leaves its fields unset). Errors name the file and the key.
  static HfTokenizerConfig read_dir(const std::string& dir);
};

// What a GGUF writer needs (tokenizer.ggml.*): a read-only snapshot built on request.
struct HfVocabInfo {
  // GGUF's token types (llama.cpp's llama_token_type), the same numbers as SentencePiece's.
  enum Type : uint8_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  std::string model_type;  // "BPE"
  // The model reads GPT-2's byte alphabet (a ByteLevel pre-tokenizer): GGUF's "gpt2" model;
  // otherwise a SentencePiece-style vocabulary with "▁" and byte fallback ("llama").
  bool byte_level = false;
  std::vector<std::string> split_patterns;  // the pre-tokenizer's regexes, in order
  std::vector<std::string> tokens;  // by id, as in tokenizer.json; "" for an id nothing names
  std::vector<Type> types;          // by id: special added tokens are control, the others
                                    // user-defined; <0xXX> (with byte_fallback) byte; holes unused
  std::vector<float> scores;        // empty: a BPE tokenizer.json has none (rank is the merge order)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  int32_t bos_id = -1, eos_id = -1, pad_id = -1, unk_id = -1;
  std::vector<int32_t> eos_ids;  // every id that ends generation (eos_id first)
  bool add_bos = false, add_eos = false;
};

class HfTokenizer final : public Tokenizer {
 public:
  // `tokenizer_json`: the file's bytes; `cfg`: the fields of the files beside it. `origin`
  // names the file in errors. Throws slmc::Error naming the file and the key for anything it
  // cannot read or does not implement (model types other than BPE, unknown pipeline types,
  // regexes that do not compile, merges naming unknown tokens, ids out of range or repeated).
  HfTokenizer(std::string_view tokenizer_json, const HfTokenizerConfig& cfg,
              const std::string& origin);
  ~HfTokenizer() override;

  std::string kind() const override { return "hf"; }
  int64_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  std::vector<int32_t> eos_ids() const override;
  std::vector<int32_t> special_ids() const override;
  // Hugging Face's encode(text, add_special_tokens=False): added tokens (special ones too) are
  // matched in the text first, the rest normalized, pre-tokenized and merged. Malformed UTF-8 is
  // read as a WHATWG TextDecoder reads it (each maximal ill-formed subsequence is U+FFFD).
  std::vector<int32_t> encode(std::string_view text) const override;
  // encode() with the post-processor's single-sequence template applied (e.g. BOS first): what
  // Hugging Face's encode(text) returns.
  std::vector<int32_t> encode_with_specials(std::string_view text) const;
  // Streams the decoder over one token: special tokens give "", bytes pass through raw, and
  // what the decoder does to the start of the text (Strip, Metaspace) applies after `prev` ==
  // BOS (or < 0).
  std::string decode_piece(int32_t prev, int32_t id) const override;
  std::string piece(int32_t id) const override;
  // Hugging Face's decode(ids, skip_special_tokens=True), without clean_up_tokenization_spaces.
  std::string decode(const std::vector<int32_t>& ids) const override;
  // The same, keeping special tokens.
  std::string decode_with_specials(const std::vector<int32_t>& ids) const;
  // The id of a token (model vocabulary or added token), -1 if absent.
  int32_t token_id(std::string_view token) const;

  HfVocabInfo vocab_info() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The bytes an .slm embeds for kind "hf": a first line "slmc-hf-tokenizer 1", a second line
// with the config fields as one JSON object (keys sorted, only those set), then the
// tokenizer.json bytes as read. Deterministic: the same inputs give the same bytes.
std::string make_hf_tokenizer_blob(std::string_view tokenizer_json, const HfTokenizerConfig& cfg);

// Rebuilds the tokenizer from make_hf_tokenizer_blob's bytes; `origin` names them in errors.
std::unique_ptr<HfTokenizer> load_hf_tokenizer_blob(std::string_view blob,
                                                    const std::string& origin);

}  // namespace slmc
