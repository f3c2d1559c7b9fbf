// How evaluation sees a token stream: cut into non-overlapping windows of `ctx` positions, each
// starting with BOS followed by up to ctx-1 stream tokens. Every stream token is predicted exactly
// once (the first one from BOS alone), so "tokens evaluated" equals the stream length.
// Or, to compare with llama.cpp's published figures, llama-perplexity's windows (llama_windows).
// Shared by the LibTorch model and the standalone runtime.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace slmc {

struct Window {
  std::vector<int32_t> input;    // BOS + chunk, length <= ctx
  std::vector<int32_t> targets;  // chunk, same length as input
  // Leading positions that are run (context) but not scored: llama-perplexity's first half.
  int64_t skip = 0;
};

std::vector<Window> bos_windows(const std::vector<int32_t>& stream, int64_t ctx, int32_t bos);

// llama-perplexity's windows (tools/perplexity/perplexity.cpp, perplexity()): the text is
// tokenized with BOS in front, [BOS] + stream, and cut into floor((len + 1) / ctx) chunks of ctx
// tokens at stride ctx; each chunk's first token is replaced by BOS (so the stream token there is
// neither context nor scored), and only positions ctx/2 .. ctx-2 are scored, each predicting the
// next token: ctx - 1 - ctx/2 tokens per chunk. Throws if the stream has fewer than 2 ctx - 1
// tokens (llama-perplexity refuses fewer than 2 ctx with BOS).
std::vector<Window> llama_windows(const std::vector<int32_t>& stream, int64_t ctx, int32_t bos);

// log-sum-exp(row) - row[target]: the next-token NLL in nats.
double token_nll(const float* logits, int64_t vocab, int32_t target);

// Receives logits (n, vocab) row-major and the n targets of one window, in stream order.
using LogitsSink = std::function<void(const float* logits, const int32_t* targets, int64_t n)>;
// Runs some model over windows and feeds every window's logits to the sink: the one interface
// evaluation needs from a backend.
using LogitsSource = std::function<void(const std::vector<Window>& windows, const LogitsSink& sink)>;

// `inner` with every window's first Window::skip rows dropped before they reach the sink, so the
// evaluation scores only the rest. `inner` must call its sink once per window, in order.
LogitsSource scored_rows_only(LogitsSource inner, int64_t vocab);

}  // namespace slmc
