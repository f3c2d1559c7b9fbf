// libFuzzer harness for the tokenizer.json reader (compress/tokenizer/hf_*): the input is a
// tokenizer.json, optionally followed by a NUL byte and a text (at most 256 bytes) to encode.
// Parses it, encodes the text (with and without the template), decodes the ids every way, builds
// the GGUF view, and reads the input as an .slm blob too. Bad input must end in slmc::Error,
// never a crash, a hang, a leak or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "compress/core/error.h"
#include "compress/tokenizer/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t sep = all.find('\0');
  const std::string_view json = all.substr(0, sep);
  std::string_view text = sep == std::string_view::npos ? "" : all.substr(sep + 1);
  if (text.size() > 256) text = text.substr(0, 256);
  try {
    const slmc::HfTokenizer tok(json, {}, "fuzz.json");
    const auto ids = tok.encode_with_specials(text);
    (void)tok.encode(text);
    (void)tok.decode(ids);
    (void)tok.decode_with_specials(ids);
    int32_t prev = -1;
    for (const int32_t id : ids) {
      (void)tok.decode_piece(prev, id);
      (void)tok.piece(id);
      prev = id;
    }
    (void)tok.vocab_info();
  } catch (const slmc::Error&) {
  }
  try {
    (void)slmc::load_tokenizer_from_bytes("hf", std::string(all), "fuzz.slm");
  } catch (const slmc::Error&) {
  }
  return 0;
}
