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

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v] - mx));
  return std::log(sum) + mx - logits[target];
}

}  // namespace slmc
