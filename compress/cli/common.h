// Shared plumbing of the subcommands: models with their tokenizers. DATA arguments are read with
// compress/io/token_data.h (load_eval_windows, load_token_stream, load_calibration).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compress/io/model_loader.h"
#include "compress/io/token_data.h"
#include "compress/tokenizer/tokenizer.h"

namespace slmc::cli {

// The tokenizer for a model: `explicit_path` if given, else the one an .slm model embeds, else
// one found beside the model. Returns nullptr if none was found and `required` is false; throws
// naming the model otherwise.
std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& model_path,
                                             const std::string& explicit_path, bool required);

}  // namespace slmc::cli
