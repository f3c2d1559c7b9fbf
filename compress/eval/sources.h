// The two backends as LogitsSources (compress/core/windows.h): the LibTorch model (any checkpoint,
// fp32, or an artifact dequantized) and the standalone runtime over an .slm. Evaluation and
// comparison (evaluate.h, compare.h) only see LogitsSources.
#pragma once

#include <cstdint>

#include "compress/core/windows.h"
#include "compress/model/transformer.h"
#include "export/runtime/model.h"

namespace slmc {

// `batch` windows of equal length per forward, no grad. `model` must outlive the source.
LogitsSource torch_logits_source(const Transformer& model, int64_t batch);

// A runtime session of `ctx` positions, reset per window. `model` and `pool` must outlive it.
LogitsSource runtime_logits_source(const runtime::Model& model, runtime::ThreadPool& pool,
                                   int64_t ctx);

}  // namespace slmc
