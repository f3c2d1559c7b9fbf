// The pieces of a Hugging Face tokenizer.json pipeline other than the model: normalizers,
// pre-tokenizers and decoders, each built from its JSON object with the semantics of Hugging
// Face's Rust `tokenizers` crate. Internal to compress/tokenizer (hf_tokenizer.cpp uses them).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/regex.h"
#include "compress/tokenizer/tokenizer_internal.h"

namespace slmc::hf {

using nlohmann::json;

// A place in tokenizer.json, for one-line errors: "<origin>: <path>: <problem>".
class Where {
 public:
  Where(const std::string& origin, std::string path) : origin_(&origin), path_(std::move(path)) {}
  Where operator[](const char* key) const {
    return Where(*origin_, path_.empty() ? std::string(key) : path_ + "." + key);
  }
  Where operator[](size_t index) const {
    return Where(*origin_, path_ + "[" + std::to_string(index) + "]");
  }
  const std::string& origin() const { return *origin_; }
  const std::string& path() const { return path_; }
  // "<origin>: <path>", the `what` of checked_json's getters.
  std::string what() const { return *origin_ + ": " + path_; }
  template <typename... A>
  [[noreturn]] void fail(A&&... a) const {
    slmc::fail(*origin_, ": ", path_, ": ", std::forward<A>(a)...);
  }

 private:
  const std::string* origin_;
  std::string path_;
};

// Reading JSON objects with errors that name the key.
const json* find_key(const json& obj, const char* key);            // nullptr if absent
const json& require_key(const json& obj, const char* key, const Where& w);
void require_object(const json& v, const Where& w);
std::string get_string(const json& v, const Where& w);
bool get_bool(const json& v, const Where& w);
// An optional boolean: `def` when the key is absent or null.
bool opt_bool(const json& obj, const char* key, bool def, const Where& w);
// obj["type"] as a string (error if absent).
std::string type_of(const json& obj, const Where& w);

// Translates an Oniguruma pattern (what Hugging Face's Rust crate compiles) into the PCRE2
// pattern that matches the same text: Oniguruma's \s is Unicode White_Space, where PCRE2's \s
// lacks U+0085 and adds U+180E, and its \h / \H are hexadecimal digits (horizontal space in
// PCRE2). \S inside a character class is left as PCRE2 reads it.
std::string onig_to_pcre2(const std::string& pattern);

// Per-call state of an encode: regex match data (one per pattern, created on first use), so the
// pipeline objects stay immutable and shareable between threads.
class Scratch {
 public:
  Regex::Matcher& matcher(const Regex& re);

 private:
  std::vector<std::pair<const Regex*, std::unique_ptr<Regex::Matcher>>> matchers_;
};

// A `String` or `Regex` pattern ({"String": "..."} or {"Regex": "..."}) of Split and Replace.
class Pattern {
 public:
  Pattern(const json& j, const Where& w);
  // Calls fn(begin, end) for each match in `s`, left to right, as Oniguruma's find_iter used
  // by the Rust crate reports them (an empty match right after the previous match is skipped).
  void for_each_match(std::string_view s, Scratch& sc,
                      tokenizer_internal::FunctionRef<void(size_t, size_t)> fn) const;
  bool is_regex() const { return regex_ != nullptr; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;  // as written in tokenizer.json
  std::string literal_;
  std::unique_ptr<Regex> regex_;
};

// ---- normalizers ---------------------------------------------------------------------------

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string_view s, Scratch& sc) const = 0;
};

// nullptr for JSON null. Supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip,
// Sequence; any other type is an error naming it.
std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& w);

// ---- pre-tokenizers -----------------------------------------------------------------------

// Receives each piece a pre-tokenizer produces; `at_origin` says the piece starts at offset 0
// of the text given to encode (Metaspace's prepend_scheme "first" needs it).
using PieceFn = tokenizer_internal::FunctionRef<void(std::string_view piece, bool at_origin)>;

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Emits the non-empty pieces of `s`, in order, through `out` (they may point into buffers
  // that live only during the call).
  virtual void split(std::string_view s, bool at_origin, Scratch& sc, PieceFn out) const = 0;
  // Appends the regex source of each Split, in order (for GGUF's choice of pre-tokenizer).
  virtual void patterns(std::vector<std::string>* out) const {}
};

// nullptr for JSON null. Supported: ByteLevel (add_prefix_space, use_regex), Split (String or
// Regex pattern, every behavior, invert), Metaspace (replacement, prepend_scheme, split),
// Digits (individual_digits), Sequence. ByteLevel must come last: it turns text into bytes,
// which the BPE model then reads; `*byte_level` says whether it is there.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& w, bool* byte_level);

// ---- decoders -----------------------------------------------------------------------------

// How a decoder chain runs: over every token of a sequence at once (Hugging Face's decode), or
// over one token of a stream (decode_piece), where bytes pass through raw (the stream's consumer
// sees a character's bytes arrive over several tokens) and what acts on the whole text only
// acts on the first token.
struct DecodeState {
  bool stream = false;
  bool first = true;   // stream: this token starts the text
  bool fused = false;  // a Fuse ran earlier in the chain: the list is the whole text
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode(std::vector<std::string>* tokens, DecodeState& st) const = 0;
};

// nullptr for JSON null. Supported: ByteLevel, ByteFallback, Metaspace, Replace, Strip, Fuse,
// Sequence.
std::unique_ptr<Decoder> make_decoder(const json& j, const Where& w);

}  // namespace slmc::hf
