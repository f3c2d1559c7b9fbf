// UTF-8 and Unicode helpers for the tokenizer.json pipeline: lossy decoding of malformed input,
// code point properties (libutf8proc), normalization forms and lowercasing. Internal to
// compress/tokenizer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slmc::unicode {

inline constexpr uint32_t kReplacement = 0xFFFD;

// Length of the UTF-8 character whose lead byte is `lead`, for text already known to be valid.
inline size_t char_len(uint8_t lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// The code point at s[i] (s valid UTF-8); `*len` gets its length in bytes.
uint32_t decode(std::string_view s, size_t i, size_t* len);

// decode() for text that may not be valid UTF-8 (a stream of byte tokens): an ill-formed byte
// gives U+FFFD with `*len` 1.
uint32_t decode_any(std::string_view s, size_t i, size_t* len);

// Appends `cp` as UTF-8.
void append(std::string* out, uint32_t cp);

// Writes into `*out` the text a WHATWG TextDecoder (and Rust's String::from_utf8_lossy, Python's
// errors="replace") makes of `s`: every maximal ill-formed subsequence becomes one U+FFFD.
// Returns false, leaving `*out` alone, when `s` is valid UTF-8 already.
bool to_valid(std::string_view s, std::string* out);

// Unicode properties, as the Rust `char` methods Hugging Face's tokenizers call.
bool is_white_space(uint32_t cp);  // White_Space (char::is_whitespace, regex \s)
bool is_numeric(uint32_t cp);      // general category Nd, Nl or No (char::is_numeric)
// regex \w of Rust's regex crate: Alphabetic, marks, decimal digits, connector punctuation,
// Join_Control. Alphabetic is approximated by the letter categories and Nl.
bool is_word(uint32_t cp);

enum class Form { kNFC, kNFD, kNFKC, kNFKD };
// `s` (valid UTF-8) in normalization form `f` (libutf8proc). ASCII text is returned as is.
std::string normalize(std::string_view s, Form f);

// `s` (valid UTF-8) lowercased as Rust's str::to_lowercase does: the simple lowercase mapping of
// every code point, U+0130 to "i\u0307", and capital sigma to final sigma at the end of a word.
std::string to_lower(std::string_view s);

}  // namespace slmc::unicode
