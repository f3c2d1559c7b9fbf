// slmc's byte-level tokenizer.json (what write_byte_tokenizer_json writes; any other
// tokenizer.json is refused naming what differs).
#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  slmc::fuzz::expect_ok_or_error([&] {
    const auto tok = slmc::load_tokenizer_from_bytes("byte", bytes, "tokenizer.json");
    (void)tok->decode(tok->encode("Hello \xe6\x97\xa5 \xff"));
  });
  return 0;
}
