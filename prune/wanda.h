// Wanda (Sun et al. 2023, locuslab/wanda `prune_wanda`): the importance of weight W_ij is
// |W_ij| * ||X_j||, its magnitude times the L2 norm of input feature j over the calibration
// tokens, compared within each output row (unstructured) or within each N:M group. No weight
// update, one forward per layer (compress/model/layerwise.h collects ||X_j||^2 per input group).
#pragma once

#include <torch/types.h>

#include "prune/masks.h"

namespace slmc::prune {

// (rows, cols) scores |W| * sqrt(col_sq) from W (rows, cols) and col_sq (cols), the sum over
// calibration tokens of x_j^2 (the reference's scaler_row is the same up to a constant factor per
// tensor: a running mean over its batches, which no row's order depends on).
torch::Tensor wanda_score(const torch::Tensor& W, const torch::Tensor& col_sq);

// The Wanda mask: per output row at `sparsity`, or N:M when pattern.any().
torch::Tensor wanda_mask(const torch::Tensor& W, const torch::Tensor& col_sq, double sparsity,
                         const NmPattern& pattern);

}  // namespace slmc::prune
