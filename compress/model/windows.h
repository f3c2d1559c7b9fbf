// The LibTorch model as a LogitsSource (see compress/core/windows.h for the windowing).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "compress/core/windows.h"
#include "compress/model/transformer.h"

namespace slmc {

// Runs the model over windows, `batch` windows of equal length at a time (no grad), and calls
// `fn(logits, targets, n)` with logits (n, vocab) row-major fp32 in stream order.
void for_each_window_logits(const Transformer& model, const std::vector<Window>& windows,
                            int64_t batch, const LogitsSink& fn);

}  // namespace slmc
