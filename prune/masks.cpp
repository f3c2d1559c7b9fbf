#include "prune/masks.h"

#include <torch/torch.h>

#include <cmath>

#include "compress/core/error.h"

namespace slmc::prune {

namespace {

// Marks the first `k` entries of each row's stable ascending order of `score` (rows, cols).
torch::Tensor lowest_per_row(const torch::Tensor& score, int64_t k) {
  torch::Tensor mask = torch::zeros(score.sizes(), torch::kBool);
  if (k <= 0) return mask;
  const torch::Tensor order =
      std::get<1>(torch::sort(score, /*stable=*/true, /*dim=*/-1, /*descending=*/false));
  mask.scatter_(-1, order.narrow(-1, 0, k), true);
  return mask;
}

void check_score(const torch::Tensor& score, const char* what) {
  SLMC_CHECK(score.defined() && score.dim() == 2, what, ": scores must be 2-D");
  SLMC_CHECK(torch::isfinite(score).all().item<bool>(), what, ": scores hold NaN or Inf");
}

}  // namespace

int64_t pruned_count(int64_t total, double sparsity) {
  SLMC_CHECK(sparsity >= 0 && sparsity < 1, "sparsity must be in [0, 1), got ", sparsity);
  // The 1e-9 keeps products like 0.3 * 10 = 2.9999999999999996 at 3.
  return static_cast<int64_t>(std::floor(static_cast<double>(total) * sparsity + 1e-9));
}

torch::Tensor mask_per_tensor(const torch::Tensor& score, double sparsity) {
  check_score(score, "mask_per_tensor");
  const torch::Tensor flat = score.reshape({1, -1}).to(torch::kFloat64);
  return lowest_per_row(flat, pruned_count(flat.size(1), sparsity)).view(score.sizes());
}

torch::Tensor mask_per_row(const torch::Tensor& score, double sparsity) {
  check_score(score, "mask_per_row");
  return lowest_per_row(score, pruned_count(score.size(1), sparsity));
}

torch::Tensor mask_nm(const torch::Tensor& score, const NmPattern& p) {
  check_score(score, "mask_nm");
  SLMC_CHECK(p.m > 0 && p.n >= 0 && p.n < p.m, "N:M pattern ", p.n, ":", p.m, " needs 0 <= N < M");
  const int64_t rows = score.size(0), cols = score.size(1);
  SLMC_CHECK(cols % p.m == 0, "N:M pattern ", p.n, ":", p.m, ": ", cols,
             " columns are not a multiple of ", p.m);
  const torch::Tensor groups = score.reshape({rows * (cols / p.m), p.m});
  return lowest_per_row(groups, p.m - p.n).view({rows, cols});
}

std::vector<torch::Tensor> mask_global(const std::vector<torch::Tensor>& scores, double sparsity) {
  std::vector<torch::Tensor> flat;
  for (const torch::Tensor& s : scores) {
    check_score(s, "mask_global");
    flat.push_back(s.reshape({-1}).to(torch::kFloat64));
  }
  const torch::Tensor all = torch::cat(flat).unsqueeze(0);
  const torch::Tensor mask = lowest_per_row(all, pruned_count(all.size(1), sparsity)).squeeze(0);
  std::vector<torch::Tensor> out;
  int64_t at = 0;
  for (const torch::Tensor& s : scores) {
    out.push_back(mask.narrow(0, at, s.numel()).view(s.sizes()).clone());
    at += s.numel();
  }
  return out;
}

}  // namespace slmc::prune
