// ModelSpec JSON (the spec inside every .slm file): parse, validate, and a stable round trip.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "compress/core/model_spec.h"
#include "compress/core/tensor_names.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::ModelSpec spec = slmc::ModelSpec::from_json(text, "spec.json");
    (void)spec.n_params();
    // min_tensor_count() is a lower bound of the table readers build from a spec (kept to small
    // specs here: a large one costs time, not coverage).
    if (spec.min_tensor_count() > 4096) return;
    const auto decls = slmc::expected_tensors(spec);
    if (static_cast<int64_t>(decls.size()) < spec.min_tensor_count()) {
      std::fprintf(stderr, "min_tensor_count %lld exceeds the %zu tensors of the table\n",
                   static_cast<long long>(spec.min_tensor_count()), decls.size());
      std::abort();
    }
    const std::string json = spec.to_json();
    if (slmc::ModelSpec::from_json(json, "again").to_json() != json) {
      std::fprintf(stderr, "round trip differs: %s\n", json.c_str());
      std::abort();
    }
  });
  return 0;
}
