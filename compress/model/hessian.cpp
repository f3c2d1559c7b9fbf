#include "compress/model/hessian.h"

#include <torch/torch.h>

#include <algorithm>
#include <string>

#include "compress/core/error.h"

namespace slmc {

using torch::Tensor;

void add_outer(Tensor& acc, const Tensor& a, const Tensor& b) {
  if (!acc.defined()) acc = torch::zeros({a.size(1), b.size(1)}, torch::kFloat32);
  acc.addmm_(a.t(), b);
}

// Same matrix as the references' route, cheaper and without the explicit inverse: factor the
// index-reversed h as J h J = L L^T, so h = R R^T with R = J L J upper, and h^-1 = R^-T R^-1
// gives U = R^-1.
// The factorization runs in float64: real activations have outlier channels whose diag(H) is
// 1e4 x the mean, where fp32 pivots lose most of their digits or go negative. R's condition
// number is only the square root of H's, so inverting it in fp32 (the precision of the sweeps
// that use U) costs nothing measurable and halves the time of this step.
Tensor inverse_cholesky_upper(const Tensor& h) {
  Tensor L, info;
  std::tie(L, info) = torch::linalg_cholesky_ex(h.flip({0, 1}));
  if (info.item<int64_t>() != 0) return Tensor();
  const Tensor R = L.flip({0, 1}).to(torch::kFloat32);
  // U = R^-1 by column blocks: block [j0, j1) of U is zero below row j1, so it only needs the
  // leading (j1, j1) triangle of R. A third of the flops of one solve against the identity.
  const int64_t n = h.size(0), step = 256;
  Tensor U = torch::zeros({n, n}, R.options());  // row-major (R is LAPACK's column-major)
  for (int64_t j0 = 0; j0 < n; j0 += step) {
    const int64_t j1 = std::min(n, j0 + step);
    const Tensor rhs = torch::eye(j1, R.options()).narrow(1, j0, j1 - j0);
    U.narrow(1, j0, j1 - j0)
        .narrow(0, 0, j1)
        .copy_(torch::linalg_solve_triangular(R.narrow(0, 0, j1).narrow(1, 0, j1), rhs,
                                              /*upper=*/true));
  }
  if (!torch::isfinite(U).all().item<bool>()) return Tensor();
  return U;
}

Tensor factor_damped(const Tensor& h, double damp_rel, const char* what,
                     const std::function<Tensor(const Tensor&)>& factor) {
  const double mean_diag = h.diagonal().mean().item<double>();
  double damp = damp_rel * mean_diag;
  std::string tried;
  for (int attempt = 0; attempt < 3; ++attempt, damp *= 10) {
    Tensor hd = h.clone();
    hd.diagonal().add_(damp);
    Tensor f = factor(hd);
    if (f.defined()) return f;
    tried += str_cat(attempt ? ", " : "", damp);
  }
  fail(what, ": H + damp I is not positive definite for damp = ", tried,
       " (mean diag(H) = ", mean_diag, ", damp option = ", damp_rel, ")");
}

}  // namespace slmc
