// SparseGPT (Frantar & Alistarh 2023, IST-DASLab/sparsegpt `fasterprune`): prunes a weight matrix
// column by column and spreads each pruned weight's error over the columns not yet visited with
// the inverse Hessian of the layer's calibration inputs (Optimal Brain Surgeon updates), so the
// kept weights compensate. Masks are chosen adaptively: for unstructured sparsity per block of
// `block_size` columns from w^2 / [H^-1]_jj^2 of the block's current weights; for N:M per group of
// M columns of a row when the sweep reaches it. The same memory bound as GPTQ: one H per layer
// input group, one layer at a time (compress/model/layerwise.h).
#pragma once

#include <torch/types.h>

#include "prune/masks.h"

namespace slmc::prune {

struct SparseGptOptions {
  double sparsity = 0.5;     // unstructured: share of each block's weights pruned
  NmPattern pattern;         // N:M instead (sparsity ignored)
  int64_t block_size = 128;  // columns per lazy batch and per mask-selection block
  double damp = 0.01;        // share of mean diag(H) added to the diagonal (percdamp)
};

struct SparseGptResult {
  torch::Tensor weights;  // (rows, cols) fp32: pruned and updated; exactly 0 where mask
  torch::Tensor mask;     // (rows, cols) bool: pruned
  double loss = 0;        // the reference's error: sum over weights of (w - q)^2 / [H^-1]_jj^2 / 2
};

// W (rows, cols), H (cols, cols) sum of x x^T over calibration tokens (not modified). Where this
// departs from the reference (the PyTorch port in tests/prune/gen_prune_golden.py follows it):
//   * an unstructured block prunes exactly floor(rows * count * sparsity) weights (the reference
//     prunes every weight <= the k-th smallest score: k + 1, more on ties);
//   * inputs that were never active (diag(H) = 0) keep their weights and are decoupled (H_ii = 1),
//     as in slmc's GPTQ (the reference zeroes W[:, dead]);
//   * H is factored in float64 (compress/model/hessian.h; the reference: float32), with GPTQ's
//     dampening escalation when H + damp I is not positive definite;
//   * N:M groups start at absolute columns (the reference: at multiples of M within a block; the
//     same when M divides block_size, which is required).
// Throws slmc::Error for shapes that do not fit, non-finite input, sparsity outside [0, 1), or an
// N:M pattern whose M does not divide the columns or block_size.
SparseGptResult sparsegpt_prune(const torch::Tensor& W, const torch::Tensor& H,
                                const SparseGptOptions& o);

}  // namespace slmc::prune
