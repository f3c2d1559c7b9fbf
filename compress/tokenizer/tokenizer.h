// Tokenizers: SentencePiece `.model` (read natively: libsentencepiece cannot share a process with
// LibTorch), llama2.c `tokenizer.bin`, Hugging Face `tokenizer.json` (BPE; hf_tokenizer.h), and
// the byte-level tokenizer of slmc's own models.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace slmc {

// Every Tokenizer::kind(); the .slm container keeps its own copy (export/format), which a test
// holds equal to this one. Persisted in .slm headers (at most 15 bytes): never rename one.
inline constexpr const char* kTokenizerKinds[] = {"sentencepiece", "llama2c", "byte", "hf"};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // One of kTokenizerKinds.
  virtual std::string kind() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the tokenizer has none
  virtual int32_t eos_id() const = 0;  // -1 when the tokenizer has none
  // Every id that ends generation: eos_id() first, then e.g. generation_config.json's list.
  virtual std::vector<int32_t> eos_ids() const;
  // The ids of control tokens (BOS, EOS, ..., every special added token), ascending.
  virtual std::vector<int32_t> special_ids() const;

  // Token ids for `text`, without BOS/EOS. Deterministic; the SentencePiece path matches
  // libsentencepiece's EncodeAsIds exactly.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;

  // The bytes token `id` stands for when it follows `prev` in generated text (llama2.c run.c
  // semantics): byte tokens become their byte, "▁" becomes a space, and the leading space of a
  // piece right after BOS is dropped. Control tokens (BOS/EOS/unk) give "".
  virtual std::string decode_piece(int32_t prev, int32_t id) const = 0;

  // The vocabulary entry as stored (for `inspect` and error messages).
  virtual std::string piece(int32_t id) const = 0;

  // The text of `ids` without control tokens. By default decode_piece concatenated, starting as
  // if after BOS; HfTokenizer runs its decoder over the whole list.
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  // Path the tokenizer was loaded from ("" for built-in).
  const std::string& source() const { return source_; }

  // The bytes that rebuild this tokenizer: load_tokenizer_from_bytes(kind(), blob(), ...) gives
  // one that encodes and decodes identically. The tokenizer file's contents as read ("" for the
  // built-in byte tokenizer). This is what an .slm file embeds.
  const std::string& blob() const { return blob_; }

 protected:
  std::string source_;

 private:
  friend std::unique_ptr<Tokenizer> load_tokenizer_from_bytes(const std::string& kind,
                                                              const std::string& bytes,
                                                              const std::string& origin);
  std::string blob_;
};

// Loads a tokenizer file, detected from its name and contents: `*.model` SentencePiece protobuf,
// llama2.c `tokenizer.bin`/`tok*.bin`, `tokenizer.json` (slmc's byte-level file as kind "byte",
// any other as kind "hf", with tokenizer_config.json and generation_config.json from the same
// directory). Throws slmc::Error naming the file and the problem.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Rebuilds a tokenizer from a file's contents (e.g. the blob embedded in an .slm file) without
// the file. `kind` is what Tokenizer::kind() says: "sentencepiece" (a `.model` protobuf),
// "llama2c" (a `tokenizer.bin`), "byte" (slmc's `tokenizer.json`, or "" for the built-in
// byte tokenizer) or "hf" (make_hf_tokenizer_blob's bytes). `origin` names the bytes in errors
// and becomes source(). Throws slmc::Error.
std::unique_ptr<Tokenizer> load_tokenizer_from_bytes(const std::string& kind,
                                                     const std::string& bytes,
                                                     const std::string& origin);

// Finds a tokenizer beside a model (a HF directory, or the directory holding a llama2.c `.bin`):
// tokenizer.model, then tokenizer.json, then tokenizer.bin, then tok*.model, tok*.bin.
// Returns "" if none is there.
std::string find_tokenizer_beside(const std::string& model_path);

// The byte-level tokenizer: ids 0..255 are bytes, 256 is BOS `<s>`, 257 is EOS `</s>`.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Writes the byte-level tokenizer as a Hugging Face `tokenizer.json` (BPE over the GPT-2 byte
// alphabet with no merges, ByteLevel pre-tokenizer and decoder), so HF tools can read it and
// load_tokenizer() recognises it.
void write_byte_tokenizer_json(const std::string& path);

}  // namespace slmc
