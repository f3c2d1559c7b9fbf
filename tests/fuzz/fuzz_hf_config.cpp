// Hugging Face config.json -> ModelSpec (every family, per-layer width lists), and back: for the
// families slmc writes, hf_config_json(spec) must parse to the same spec.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "compress/io/model_loader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::ModelSpec spec = slmc::parse_hf_config(text, "config.json");
    (void)spec.n_params();
    std::string written;
    try {
      written = slmc::hf_config_json(spec);
    } catch (const slmc::Error&) {
      return;  // a family or a shape config.json cannot express: refused, fine
    }
    const slmc::ModelSpec back = slmc::parse_hf_config(written, "written config.json");
    if (back.to_json() != spec.to_json()) {
      std::fprintf(stderr, "round trip differs:\n%s\n%s\n", spec.to_json().c_str(),
                   back.to_json().c_str());
      std::abort();
    }
  });
  return 0;
}
