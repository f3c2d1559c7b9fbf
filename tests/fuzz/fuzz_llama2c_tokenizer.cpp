// llama2.c tokenizer.bin (int32 max_token_length, then score, length, bytes per token): parse,
// then encode and decode. The encoder's buffers must follow the longest token present, not the
// header's claim.
#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  slmc::fuzz::expect_ok_or_error([&] {
    const auto tok = slmc::load_tokenizer_from_bytes("llama2c", bytes, "tokenizer.bin");
    const std::string texts[] = {"", "Once upon a time", "caf\xc3\xa9 \xe6\x97\xa5",
                                 std::string("\xff\x00\x80 x", 5), bytes.substr(0, 64)};
    for (const std::string& t : texts) (void)tok->decode(tok->encode(t));
    const int64_t n = std::min<int64_t>(tok->vocab_size(), 512);
    for (int32_t id = 0; id < n; ++id) (void)tok->decode_piece(1, id);
  });
  return 0;
}
