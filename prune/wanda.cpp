#include "prune/wanda.h"

#include <torch/torch.h>

#include "compress/core/error.h"

namespace slmc::prune {

torch::Tensor wanda_score(const torch::Tensor& W, const torch::Tensor& col_sq) {
  SLMC_CHECK(W.defined() && W.dim() == 2, "wanda: weights must be 2-D");
  SLMC_CHECK(col_sq.defined() && col_sq.dim() == 1 && col_sq.size(0) == W.size(1),
             "wanda: input norms must be (", W.size(1), ")");
  return W.to(torch::kFloat32).abs() * col_sq.to(torch::kFloat32).sqrt().unsqueeze(0);
}

torch::Tensor wanda_mask(const torch::Tensor& W, const torch::Tensor& col_sq, double sparsity,
                         const NmPattern& pattern) {
  const torch::Tensor score = wanda_score(W, col_sq);
  return pattern.any() ? mask_nm(score, pattern) : mask_per_row(score, sparsity);
}

}  // namespace slmc::prune
