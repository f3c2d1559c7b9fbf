// Comparing models on the same windows in memory: the reference runs a few windows at a time and
// every model follows on the same windows, so KL(reference || model) and top-1 agreement need no
// saved logit file, and memory holds one chunk of the reference's logits whatever the data size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/core/windows.h"
#include "compress/eval/evaluate.h"

namespace slmc {

struct Comparison {
  EvalResult reference;            // perplexity of the reference (has_ref false)
  std::vector<EvalResult> models;  // one per model, has_ref true (KL, p99, top-1 vs reference)
};

// Runs `reference` and then each of `models` over `windows` chunk by chunk; a chunk holds as many
// windows as fit `chunk_bytes` of reference logits (at least one). Identical numbers to saving
// the reference's logits and evaluating each model against them (evaluate with ref_logits).
// Throws slmc::Error if a source yields a different number of positions or targets than the
// windows hold.
Comparison compare_models(const LogitsSource& reference, const std::vector<LogitsSource>& models,
                          int64_t vocab, const std::vector<Window>& windows,
                          const std::string& label = "compare",
                          int64_t chunk_bytes = int64_t{256} << 20);

}  // namespace slmc
