#include "compress/model/windows.h"

#include <torch/torch.h>

#include <cmath>

#include "compress/core/error.h"

namespace slmc {

void for_each_window_logits(const Transformer& model, const std::vector<Window>& windows,
                            int64_t batch, const LogitsSink& fn) {
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

}  // namespace slmc
