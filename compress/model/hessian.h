// The calibration Hessian H = sum over tokens of x x^T and its damped factorizations: what every
// second-order method (GPTQ, SparseGPT, structured pruning with reconstruction, GPTQ's asymmetric
// target) shares. Lives beside the layer-wise driver so prune/ and quantize/ never link each other.
#pragma once

#include <torch/types.h>

#include <functional>

namespace slmc {

// acc += a^T b (a: (n, p), b: (n, q)), from zeros when acc is undefined: the sums x^T x (H) and
// (xf - x)^T x (D) the layer-wise driver accumulates, fp32.
void add_outer(torch::Tensor& acc, const torch::Tensor& a, const torch::Tensor& b);

// The upper Cholesky factor U of h^-1 (U^T U = h^-1), what GPTQ's and SparseGPT's sweeps read
// (the references get it as cholesky(cholesky_inverse(cholesky(H)), upper=True)). `h` is float64
// (cols, cols); U is fp32. Returns an undefined tensor if h is not positive definite (the
// factorization fails or U is not finite).
torch::Tensor inverse_cholesky_upper(const torch::Tensor& h);

// factor(h + damp I) with damp = damp_rel * mean diag(h), raising damp tenfold twice while
// `factor` fails (returns an undefined tensor). Throws slmc::Error starting with `what` and
// naming every damp tried when all three fail. `h` is not modified.
torch::Tensor factor_damped(const torch::Tensor& h, double damp_rel, const char* what,
                            const std::function<torch::Tensor(const torch::Tensor&)>& factor);

}  // namespace slmc
