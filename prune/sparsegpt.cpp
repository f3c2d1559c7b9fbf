#include "prune/sparsegpt.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "compress/core/error.h"
#include "compress/model/hessian.h"

namespace slmc::prune {

SparseGptResult sparsegpt_prune(const torch::Tensor& W, const torch::Tensor& H,
                                const SparseGptOptions& o) {
  torch::NoGradGuard no_grad;
  SLMC_CHECK(W.defined() && W.dim() == 2 && W.size(0) > 0 && W.size(1) > 0,
             "sparsegpt: weights must be a non-empty matrix");
  const int64_t rows = W.size(0), cols = W.size(1);
  SLMC_CHECK(H.defined() && H.dim() == 2 && H.size(0) == cols && H.size(1) == cols,
             "sparsegpt: H must be (", cols, ", ", cols, ")");
  SLMC_CHECK(o.block_size >= 1, "sparsegpt: block_size must be >= 1, got ", o.block_size);
  SLMC_CHECK(o.damp > 0 && o.damp <= 1, "sparsegpt: damp must be in (0, 1], got ", o.damp);
  const bool nm = o.pattern.any();
  if (nm) {
    SLMC_CHECK(o.pattern.n >= 0 && o.pattern.n < o.pattern.m, "sparsegpt: pattern ", o.pattern.n,
               ":", o.pattern.m, " needs N < M");
    SLMC_CHECK(cols % o.pattern.m == 0 && o.block_size % o.pattern.m == 0, "sparsegpt: pattern ",
               o.pattern.n, ":", o.pattern.m, ": M must divide the ", cols,
               " columns and block_size ", o.block_size);
  } else {
    SLMC_CHECK(o.sparsity >= 0 && o.sparsity < 1, "sparsegpt: sparsity must be in [0, 1), got ",
               o.sparsity);
  }
  torch::Tensor w = W.to(torch::kFloat32).contiguous().clone();
  SLMC_CHECK(torch::isfinite(w).all().item<bool>(), "sparsegpt: weights contain NaN or Inf");
  torch::Tensor h = H.to(torch::kFloat64, /*non_blocking=*/false, /*copy=*/true);
  SLMC_CHECK(torch::isfinite(h).all().item<bool>(), "sparsegpt: H contains NaN or Inf");
  // Inputs never active: H_ii = 1 decouples them (they neither receive nor spread error).
  h.diagonal().masked_fill_(h.diagonal() == 0, 1.0);
  const torch::Tensor hinv_t =
      factor_damped(h, o.damp, "sparsegpt", inverse_cholesky_upper).contiguous();
  const float* hinv = hinv_t.data_ptr<float>();
  std::vector<float> hdiag2(static_cast<size_t>(cols));  // [H^-1]_jj^2, the score's divisor
  for (int64_t j = 0; j < cols; ++j) {
    const float d = hinv[j * cols + j];
    hdiag2[static_cast<size_t>(j)] = d * d;
  }

  torch::Tensor mask = torch::zeros({rows, cols}, torch::kBool);
  bool* mk = mask.data_ptr<bool>();
  float* wp = w.data_ptr<float>();
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  for (int64_t i1 = 0; i1 < cols; i1 += o.block_size) {
    const int64_t i2 = std::min(i1 + o.block_size, cols), count = i2 - i1;
    if (!nm) {
      // The block's mask from its current weights: the lowest w^2 / [H^-1]_jj^2 over all rows.
      const torch::Tensor block = w.narrow(1, i1, count);
      const torch::Tensor div = torch::from_blob(hdiag2.data() + i1, {1, count}, torch::kFloat32);
      const torch::Tensor score = block * block / div;
      mask.narrow(1, i1, count).copy_(mask_per_tensor(score, o.sparsity));
    }
    torch::Tensor err_t = torch::empty({rows, count}, torch::kFloat32);
    float* err = err_t.data_ptr<float>();
    const int64_t grain = std::max<int64_t>(1, 32768 / (count * count + 1));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      std::vector<float> score(static_cast<size_t>(nm ? o.pattern.m : 0));
      std::vector<int64_t> order(score.size());
      for (int64_t r = r0; r < r1; ++r) {
        float* wr = wp + r * cols;
        bool* mr = mk + r * cols;
        float* er = err + r * count;
        double loss = 0;
        for (int64_t i = i1; i < i2; ++i) {
          if (nm && i % o.pattern.m == 0) {
            // This group's mask from the row's current weights: its m - n lowest scores.
            for (int64_t j = 0; j < o.pattern.m; ++j)
              score[static_cast<size_t>(j)] =
                  wr[i + j] * wr[i + j] / hdiag2[static_cast<size_t>(i + j)];
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
              return score[static_cast<size_t>(a)] < score[static_cast<size_t>(b)];
            });
            for (int64_t j = 0; j < o.pattern.m - o.pattern.n; ++j)
              mr[i + order[static_cast<size_t>(j)]] = true;
          }
          const float x = wr[i];
          const float d = hinv[i * cols + i];
          const float q = mr[i] ? 0.0f : x;
          loss += static_cast<double>((x - q) * (x - q) / (d * d));
          const float e = (x - q) / d;
          er[i - i1] = e;
          const float* hrow = hinv + i * cols;
          for (int64_t j = i + 1; j < i2; ++j) wr[j] -= e * hrow[j];
          wr[i] = q;
        }
        row_loss[static_cast<size_t>(r)] += loss;
      }
    });
    if (i2 < cols)
      w.narrow(1, i2, cols - i2)
          .addmm_(err_t, hinv_t.narrow(0, i1, count).narrow(1, i2, cols - i2), /*beta=*/1,
                  /*alpha=*/-1);
  }
  SparseGptResult r;
  r.weights = w;
  r.mask = mask;
  for (double l : row_loss) r.loss += l / 2;
  return r;
}

}  // namespace slmc::prune
