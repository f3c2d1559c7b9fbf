// A model file given by path: the llama2.c legacy checkpoint (7 int32 header, then fp32 weights
// whose size the header must imply exactly), through load_model's format detection.
#include <cstddef>
#include <cstdint>

#include "compress/io/model_loader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static slmc::fuzz::MemFile file("fuzz_llama2c");
  const std::string& path = file.write(data, size);
  slmc::fuzz::expect_ok_or_error([&] { (void)slmc::load_model(path); });
  return 0;
}
