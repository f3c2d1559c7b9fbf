// How evaluation sees a token stream: cut into non-overlapping windows of `ctx` positions, each
// starting with BOS followed by up to ctx-1 stream tokens. Every stream token is predicted exactly
// once (the first one from BOS alone), so "tokens evaluated" equals the stream length.
// Shared by the LibTorch model and the standalone runtime.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace slmc {

struct Window {
  std::vector<int32_t> input;    // BOS + chunk, length <= ctx
  std::vector<int32_t> targets;  // chunk, same length as input
};

std::vector<Window> bos_windows(const std::vector<int32_t>& stream, int64_t ctx, int32_t bos);

// log-sum-exp(row) - row[target]: the next-token NLL in nats.
double token_nll(const float* logits, int64_t vocab, int32_t target);

// Receives logits (n, vocab) row-major and the n targets of one window, in stream order.
using LogitsSink = std::function<void(const float* logits, const int32_t* targets, int64_t n)>;
// Runs some model over windows and feeds every window's logits to the sink: the one interface
// evaluation needs from a backend.
using LogitsSource = std::function<void(const std::vector<Window>& windows, const LogitsSink& sink)>;

}  // namespace slmc
