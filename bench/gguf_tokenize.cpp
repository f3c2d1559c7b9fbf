// Prints the ids slmc gives each text file, one line per file in llama-tokenize's --ids format
// ("[1, 2, 3]"), with the tokenizer a GGUF file carries (--gguf) or a tokenizer file (--tokenizer):
// the slmc side of bench/gguf_tokenizer_check.sh. No BOS (as llama-tokenize --no-bos).
//   slmc_gguf_tokenize --gguf model.gguf TEXT...
//   slmc_gguf_tokenize --tokenizer tokenizer.json TEXT...
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/gguf.h"
#include "export/format/gguf_model.h"

int main(int argc, char** argv) {
  if (argc < 3 ||
      (std::strcmp(argv[1], "--gguf") != 0 && std::strcmp(argv[1], "--tokenizer") != 0)) {
    std::fprintf(stderr, "usage: %s --gguf FILE.gguf | --tokenizer FILE  TEXT...\n", argv[0]);
    return 2;
  }
  try {
    std::unique_ptr<slmc::Tokenizer> tok;
    if (std::strcmp(argv[1], "--gguf") == 0) {
      const slmc::format::GgufFile f(argv[2]);
      tok = slmc::format::gguf_tokenizer(f);
      SLMC_CHECK(tok != nullptr, argv[2], ": no tokenizer.ggml.model");
    } else {
      tok = slmc::load_tokenizer(argv[2]);
    }
    for (int i = 3; i < argc; ++i) {
      const std::vector<int32_t> ids = tok->encode(slmc::read_file(argv[i]));
      std::string line = "[";
      for (size_t k = 0; k < ids.size(); ++k) line += (k ? ", " : "") + std::to_string(ids[k]);
      std::printf("%s]\n", line.c_str());
    }
  } catch (const slmc::Error& e) {
    std::fprintf(stderr, "slmc_gguf_tokenize: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
