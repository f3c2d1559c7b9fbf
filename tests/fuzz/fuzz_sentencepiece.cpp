// SentencePiece .model (protobuf ModelProto read natively): parse, then encode and decode a few
// texts (ASCII, UTF-8, invalid UTF-8, the pieces themselves) with the loaded model.
#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  slmc::fuzz::expect_ok_or_error([&] {
    const auto tok = slmc::load_tokenizer_from_bytes("sentencepiece", bytes, "tokenizer.model");
    const std::string texts[] = {"", " ", "Hello world, the cat sat.", "\xe2\x96\x81\xe2\x96\x81 a",
                                 "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
                                 std::string("\xff\xfe\x00\x80 x", 6), bytes.substr(0, 64)};
    for (const std::string& t : texts) {
      const std::vector<int32_t> ids = tok->encode(t);
      (void)tok->decode(ids);
    }
    const int64_t n = std::min<int64_t>(tok->vocab_size(), 512);
    for (int32_t id = 0; id < n; ++id) (void)tok->decode_piece(id > 0 ? id - 1 : 0, id);
  });
  return 0;
}
