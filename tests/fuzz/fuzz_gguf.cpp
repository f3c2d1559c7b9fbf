// libFuzzer harness for the GGUF reader (export/format/gguf.h) and what reads a model out of one
// (gguf_model.h: spec, tensor placement, tokenizer): any input either parses or throws slmc::Error;
// nothing else (a crash, a sanitizer report, another exception, a hang) is acceptable.
// Torch-free: links slmc_gguf (with slmc_tokenizer, slmc_codec, slmc_core) only.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "compress/core/error.h"
#include "export/format/gguf.h"
#include "export/format/gguf_model.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const slmc::format::GgufFile f(data, size, "fuzz.gguf");
    // Every tensor's bytes were bounds-checked: touch the first and last byte of each.
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors())
      if (t.n_bytes > 0) sink = static_cast<uint8_t>(sink ^ f.data(t)[0] ^ f.data(t)[t.n_bytes - 1]);
    try {
      const slmc::ModelSpec spec = slmc::format::gguf_model_spec(f);
      for (const auto& [name, src] : slmc::format::gguf_sources(f, spec)) {
        const size_t rb = src.cols == 1 ? 4 : slmc::codec::row_bytes(src.format, src.cols);
        if (rb * static_cast<size_t>(src.rows) > (size_t{1} << 24)) continue;  // keep runs fast
        std::vector<uint8_t> rows(rb * static_cast<size_t>(src.rows));
        slmc::format::gguf_read_rows(f, src, rows.data());
      }
    } catch (const slmc::Error& e) {
      slmc::fuzz::check_message(e);
    }
    try {
      slmc::format::gguf_tokenizer(f);
    } catch (const slmc::Error& e) {
      slmc::fuzz::check_message(e);
    }
  } catch (const slmc::Error& e) {
    slmc::fuzz::check_message(e);
  }
  return 0;
}
