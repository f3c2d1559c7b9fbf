// How evaluation sees a token stream: cut into non-overlapping windows of `ctx` positions, each
// starting with BOS followed by up to ctx-1 stream tokens. Every stream token is predicted exactly
// once (the first one from BOS alone), so "tokens evaluated" equals the stream length.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "compress/model/transformer.h"

namespace slmc {

struct Window {
  std::vector<int32_t> input;    // BOS + chunk, length <= ctx
  std::vector<int32_t> targets;  // chunk, same length as input
};

std::vector<Window> bos_windows(const std::vector<int32_t>& stream, int64_t ctx, int32_t bos);

// Runs the model over windows, `batch` windows of equal length at a time (no grad), and calls
// `fn(logits, targets, n)` with logits (n, vocab) row-major fp32 in stream order.
void for_each_window_logits(
    const Transformer& model, const std::vector<Window>& windows, int64_t batch,
    const std::function<void(const float* logits, const int32_t* targets, int64_t n)>& fn);

// log-sum-exp(row) - row[target]: the next-token NLL in nats.
double token_nll(const float* logits, int64_t vocab, int32_t target);

}  // namespace slmc
