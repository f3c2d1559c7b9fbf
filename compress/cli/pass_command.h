// What `slmc quantize` and `slmc prune` share: a model, either method flags (declared by the
// pass's options struct) or a recipe whose stages are all of the command's kind, calibration and
// evaluation data flags that override the recipe's, the outputs, and --json. Each command declares
// its own method options and output flags and builds its pass; this runs the rest.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

#include "compress/cli/option_flags.h"
#include "compress/recipe/runner.h"

namespace slmc::cli {

struct PassCommand {
  explicit PassCommand(std::string k) : kind(std::move(k)) {}
  std::string kind;  // the stage kind: "quantize", "prune"
  std::string model, recipe, tokenizer, calib, eval;
  int64_t samples = 128, seq_len = 256, eval_ctx = 512;
  uint64_t seed = 0;
  bool json = false;
  std::vector<ExportSpec> outputs;    // filled by the command from its output flags
  std::unique_ptr<CliBinder> binder;  // the method's flags
  CLI::App* sub = nullptr;

  // Declares --model, --recipe, --tokenizer, the data flags and --json on `sub`, and returns the
  // binder the command's options struct visits (flags grouped under `method_group`).
  CliBinder& setup(CLI::App* sub, const std::string& method_group);

  // Builds the stages (the recipe's, all of `kind`, or one pass from the flags by `make`), applies
  // the data flags over the recipe's, and runs and prints (run_and_print).
  void run(const std::function<std::unique_ptr<Pass>(OptionOrigins)>& make);
};

}  // namespace slmc::cli
