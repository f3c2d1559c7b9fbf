// What `slmc quantize` and `slmc run` share: calibration data, running passes over a model,
// writing the .slm, and the final accuracy table measured with the runtime against the
// unquantized model, with the recipe's gates.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compress/recipe/recipe.h"

namespace slmc::cli {

// Calibration sequences from DATA (text tokenized with `tok`, or HDF5 tokens): `samples`
// non-overlapping windows of BOS + (seq_len - 1) tokens, drawn with `seed`. Throws naming the
// file when it is too short or holds ids outside the vocab.
CalibrationSet load_calibration(const std::string& path, const Tokenizer* tok,
                                const ModelSpec& spec, int64_t samples, int64_t seq_len,
                                uint64_t seed);

struct PipelineInput {
  std::string model_path;
  std::string tokenizer_path;           // "" = the model's own / beside it
  std::vector<Pass*> passes;            // run in order
  DataSpec calibration;                 // path "" = none
  DataSpec eval;                        // path "" = no accuracy table
  std::string out;                      // the .slm to write
  Gates gates;
  bool json = false;
};

// Runs everything, prints reports (human tables, or one JSON object on stdout with --json), and
// throws slmc::Error when a gate fails.
void run_pipeline(const PipelineInput& in);

// Registers every built-in pass with the registry (call once, before recipes are parsed).
void register_builtin_passes();

}  // namespace slmc::cli
