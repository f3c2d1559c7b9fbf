// llama2.c `tokenizer.bin`: int32 max_token_length, then per token float32 score, int32 len and
// len bytes, until the end of the file. Encoding and decoding follow llama2.c run.c's encode()
// and decode() (BOS 1, EOS 2, byte token of byte b = b + 3).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compress/tokenizer/tokenizer.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc {

class Llama2cTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kUnk = 0;
  static constexpr int32_t kBos = 1;
  static constexpr int32_t kEos = 2;
  static constexpr int32_t kByteOffset = 3;  // id of byte b is b + 3

  Llama2cTokenizer(std::vector<std::string> vocab, std::vector<float> scores,
                   int32_t max_token_length, const std::string& path);
  Llama2cTokenizer(const Llama2cTokenizer&) = delete;
  Llama2cTokenizer& operator=(const Llama2cTokenizer&) = delete;

  std::string kind() const override { return "llama2c"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }
  // run.c encode(t, text, bos=0, eos=0): a dummy-prefix " " token when `text` is not empty, one
  // token per UTF-8 character (or one byte token per byte if the character is not in the
  // vocabulary), then repeatedly the best-scoring adjacent merge, leftmost on ties. run.c walks a
  // C string; here a NUL byte is just byte 0.
  std::vector<int32_t> encode(std::string_view text) const override;
  // run.c decode(), except that ids 0..2 (<unk>, BOS, EOS) give "".
  std::string decode_piece(int32_t prev, int32_t id) const override;
  std::string piece(int32_t id) const override;

  float score(int32_t id) const;
  // The longest token's length in bytes (the file header's claim is only an upper bound on it).
  int32_t max_token_length() const { return max_token_length_; }
  // run.c str_lookup(): the id of the token whose bytes are `s`, or -1. With duplicate entries
  // (which llama2.c's export never writes) the lowest id wins.
  int32_t lookup(std::string_view s) const;

 private:
  void id_check(int32_t id) const;

  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  int32_t max_token_length_;
  tokenizer_internal::PieceIndex ids_;  // views into vocab_
  // joinable_[a * 256 + b]: some token has byte a followed by byte b (see encode()).
  std::vector<bool> joinable_ = std::vector<bool>(256 * 256, false);
};

// Parses a tokenizer.bin whose contents are `bytes`; `path` names it in errors.
std::unique_ptr<Llama2cTokenizer> load_llama2c_tokenizer(std::string_view bytes,
                                                         const std::string& path);

}  // namespace slmc
