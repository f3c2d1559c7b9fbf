// The .slm container: header, sections, spec JSON, embedded tokenizer, tensor table, weights
// (NaN/Inf refused), read as `slmc` reads it for LibTorch (every tensor dequantized).
#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/slm_format.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static slmc::fuzz::MemFile file("fuzz_slm");
  const std::string& path = file.write(data, size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::format::SlmFile f(path);
    if (!f.tokenizer_kind().empty()) {
      slmc::fuzz::expect_ok_or_error([&] {
        const std::string bytes(reinterpret_cast<const char*>(f.tokenizer_data()), f.tokenizer_bytes());
        const auto tok = slmc::load_tokenizer_from_bytes(f.tokenizer_kind(), bytes, path);
        (void)tok->decode(tok->encode("Once upon a time"));
      });
    }
    for (const slmc::format::SlmTensor& t : f.tensors())
      slmc::fuzz::expect_ok_or_error([&] { slmc::format::check_finite(f, t); });
  });
  slmc::fuzz::expect_ok_or_error([&] { (void)slmc::load_model(path); });
  return 0;
}
