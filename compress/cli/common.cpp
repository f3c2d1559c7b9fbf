#include "compress/cli/common.h"

#include "compress/core/error.h"
#include "export/format/gguf_model.h"
#include "export/format/slm_format.h"

namespace slmc::cli {

std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& model_path,
                                             const std::string& explicit_path, bool required) {
  if (!explicit_path.empty()) return load_tokenizer(explicit_path);
  if (format::is_slm_file(model_path)) {  // an .slm carries its tokenizer: nothing beside counts
    const format::SlmFile f(model_path);
    if (!f.tokenizer_kind().empty()) {
      const std::string bytes(reinterpret_cast<const char*>(f.tokenizer_data()),
                              f.tokenizer_bytes());
      return load_tokenizer_from_bytes(f.tokenizer_kind(), bytes,
                                       model_path + " (embedded tokenizer)");
    }
    SLMC_CHECK(!required, model_path, ": the .slm file embeds no tokenizer; pass --tokenizer");
    return nullptr;
  }
  if (format::is_gguf_file(model_path)) {  // a GGUF carries its vocabulary
    if (auto t = format::gguf_tokenizer(format::GgufFile(model_path))) return t;
    SLMC_CHECK(!required, model_path, ": the GGUF file has no tokenizer; pass --tokenizer");
    return nullptr;
  }
  const std::string found = find_tokenizer_beside(model_path);
  if (!found.empty()) return load_tokenizer(found);
  SLMC_CHECK(!required, model_path,
             ": no tokenizer found beside the model (tokenizer.model, tokenizer.json, "
             "tokenizer.bin, tok*.model, tok*.bin); pass --tokenizer");
  return nullptr;
}

}  // namespace slmc::cli
