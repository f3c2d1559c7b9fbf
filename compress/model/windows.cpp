#include "compress/model/windows.h"

#include <torch/torch.h>

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

void for_each_window_logits(
    const Transformer& model, const std::vector<Window>& windows, int64_t batch,
    const std::function<void(const float*, const int32_t*, int64_t)>& fn) {
  torch::NoGradGuard no_grad;
  const int64_t vocab = model.spec().vocab;
  size_t i = 0;
  while (i < windows.size()) {
    // Group consecutive windows of the same length (all but the last are full).
    size_t j = i + 1;
    while (j < windows.size() && static_cast<int64_t>(j - i) < batch &&
           windows[j].input.size() == windows[i].input.size())
      ++j;
    const int64_t B = static_cast<int64_t>(j - i), T = static_cast<int64_t>(windows[i].input.size());
    auto tokens = torch::empty({B, T}, torch::kInt64);
    auto acc = tokens.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) acc[b][t] = windows[i + static_cast<size_t>(b)].input[static_cast<size_t>(t)];
    auto logits = model.forward(tokens).contiguous();
    const float* base = logits.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b)
      fn(base + b * T * vocab, windows[i + static_cast<size_t>(b)].targets.data(), T);
    i = j;
  }
}

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v] - mx));
  return std::log(sum) + mx - logits[target];
}

}  // namespace slmc
