// safetensors: header length, JSON header (dtypes, shapes, offsets, __metadata__), every tensor
// converted to fp32.
#include <cstddef>
#include <cstdint>

#include "compress/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static slmc::fuzz::MemFile file("fuzz_safetensors");
  const std::string& path = file.write(data, size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::SafetensorsFile f(path);
    for (const auto& kv : f.entries()) {
      slmc::fuzz::expect_ok_or_error([&] { (void)f.read(kv.first); });
      (void)f.raw(kv.first);
    }
  });
  return 0;
}
