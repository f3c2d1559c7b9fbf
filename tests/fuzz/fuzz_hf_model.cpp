// A whole Hugging Face directory: config.json and model.safetensors from one input (two bytes of
// config length, the config, then the safetensors bytes), loaded as `slmc` loads it: spec bounds
// against the tensors present, tied heads and __metadata__ aliases, fused tensors, shapes, NaN.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "compress/io/model_loader.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::string make_dir() {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("slmc_fuzz_hf_model_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

void put(const std::string& path, const uint8_t* p, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = make_dir();
  if (size < 2) return 0;
  const size_t config_len = std::min<size_t>(size - 2, data[0] | (size_t{data[1]} << 8));
  put(dir + "/config.json", data + 2, config_len);
  put(dir + "/model.safetensors", data + 2 + config_len, size - 2 - config_len);
  slmc::fuzz::expect_ok_or_error([&] { (void)slmc::load_hf_model(dir); });
  return 0;
}
