#include "compress/core/windows.h"

#include <algorithm>
#include <cmath>

#include "compress/core/error.h"

namespace slmc {

std::vector<Window> bos_windows(const std::vector<int32_t>& stream, int64_t ctx, int32_t bos) {
  SLMC_CHECK(ctx >= 2, "--ctx must be at least 2 (BOS + one token), got ", ctx);
  std::vector<Window> out;
  const size_t chunk = static_cast<size_t>(ctx - 1);
  for (size_t s = 0; s < stream.size(); s += chunk) {
    const size_t e = std::min(stream.size(), s + chunk);
    Window w;
    w.input.push_back(bos);
    w.input.insert(w.input.end(), stream.begin() + static_cast<std::ptrdiff_t>(s),
                   stream.begin() + static_cast<std::ptrdiff_t>(e) - 1);
    w.targets.assign(stream.begin() + static_cast<std::ptrdiff_t>(s),
                     stream.begin() + static_cast<std::ptrdiff_t>(e));
    out.push_back(std::move(w));
  }
  return out;
}

std::vector<Window> llama_windows(const std::vector<int32_t>& stream, int64_t ctx, int32_t bos) {
  SLMC_CHECK(ctx >= 4, "--ctx must be at least 4 for llama-perplexity windows, got ", ctx);
  const int64_t n_tokens = static_cast<int64_t>(stream.size()) + 1;  // with the leading BOS
  SLMC_CHECK(n_tokens >= 2 * ctx, "llama-perplexity windows of ", ctx, " need at least ",
             2 * ctx - 1, " text tokens, the data has ", stream.size());
  // tokens[k] = k == 0 ? BOS : stream[k - 1]; chunk c is tokens[c ctx, (c + 1) ctx) with its
  // first token replaced by BOS.
  auto token = [&](int64_t k) { return k == 0 ? bos : stream[static_cast<size_t>(k - 1)]; };
  std::vector<Window> out;
  for (int64_t c = 0; c < n_tokens / ctx; ++c) {
    Window w;
    w.input.push_back(bos);
    for (int64_t j = 1; j < ctx - 1; ++j) w.input.push_back(token(c * ctx + j));
    for (int64_t j = 1; j < ctx; ++j) w.targets.push_back(token(c * ctx + j));
    w.skip = ctx / 2;
    out.push_back(std::move(w));
  }
  return out;
}

LogitsSource scored_rows_only(LogitsSource inner, int64_t vocab) {
  return [inner = std::move(inner), vocab](const std::vector<Window>& windows,
                                           const LogitsSink& sink) {
    size_t i = 0;
    inner(windows, [&](const float* logits, const int32_t* targets, int64_t n) {
      SLMC_CHECK(i < windows.size(), "scored_rows_only: more logits than windows");
      const int64_t skip = std::min(windows[i++].skip, n);
      sink(logits + skip * vocab, targets + skip, n - skip);
    });
  };
}

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v] - mx));
  return std::log(sum) + mx - logits[target];
}

}  // namespace slmc
