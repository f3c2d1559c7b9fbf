// Choosing which weights to prune from a score per weight (lower = pruned first): per tensor, per
// output row, per N:M group, or over several tensors at once. Every function prunes an exact
// count (ties broken by position, earlier first), so the reported sparsity is the asked one.
// Scores: magnitude |W|, Wanda |W| * ||X_j|| (wanda.h), SparseGPT w^2 / [H^-1]_jj^2 (sparsegpt.h).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace slmc::prune {

// An N:M pattern: at most `n` kept weights in every `m` consecutive weights of a row (groups
// start at column 0). NVIDIA's 2:4 is {2, 4}; the sparsity is 1 - n / m.
struct NmPattern {
  int64_t n = 0, m = 0;
  bool any() const { return m > 0; }
  double sparsity() const {
    return m > 0 ? 1.0 - static_cast<double>(n) / static_cast<double>(m) : 0.0;
  }
};

// The number of weights out of `total` a sparsity prunes: floor(total * sparsity), computed so
// that 0.5 of an even count is exactly half.
int64_t pruned_count(int64_t total, double sparsity);

// (rows, cols) bool: the floor(numel * sparsity) lowest scores of the whole tensor.
torch::Tensor mask_per_tensor(const torch::Tensor& score, double sparsity);
// (rows, cols) bool: in every row, the floor(cols * sparsity) lowest scores (Wanda's comparison
// group: one output row).
torch::Tensor mask_per_row(const torch::Tensor& score, double sparsity);
// (rows, cols) bool: in every group of p.m consecutive weights of a row, the m - n lowest scores.
// cols must be a multiple of m.
torch::Tensor mask_nm(const torch::Tensor& score, const NmPattern& p);
// One mask per score tensor: the floor(total * sparsity) lowest scores over all of them (global
// magnitude pruning), in tensor order on ties.
std::vector<torch::Tensor> mask_global(const std::vector<torch::Tensor>& scores, double sparsity);

}  // namespace slmc::prune
