// Shared plumbing of the subcommands: models with their tokenizers, and DATA arguments.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compress/io/model_loader.h"
#include "compress/core/windows.h"
#include "compress/tokenizer/tokenizer.h"

namespace slmc::cli {

// The tokenizer for a model: `explicit_path` if given, else the one an .slm model embeds, else
// one found beside the model. Returns nullptr if none was found and `required` is false; throws
// naming the model otherwise.
std::unique_ptr<Tokenizer> resolve_tokenizer(const std::string& model_path,
                                             const std::string& explicit_path, bool required);

// DATA: an HDF5 token file (by signature) or a text file tokenized with `tok` (required then).
// 1-D streams and text are cut into BOS-led windows of `ctx` (windows.h); each row of a 2-D
// dataset is one sequence evaluated as given (row[t] predicts row[t+1]), cut to at most ctx.
// Every id is checked against `vocab`.
std::vector<Window> load_eval_windows(const std::string& path, const Tokenizer* tok, int64_t vocab,
                                      int64_t ctx, int32_t bos);

// A token stream from DATA (HDF5 1-D or 2-D flattened, or text), ids checked against `vocab`.
std::vector<int32_t> load_token_stream(const std::string& path, const Tokenizer* tok,
                                       int64_t vocab);

}  // namespace slmc::cli
