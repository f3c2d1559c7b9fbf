// Structured pruning that physically removes units, so the result is a smaller dense model:
// attention head groups and FFN channels (compress/core/units.h says which rows and columns each
// unit owns), and whole blocks. The ModelSpec afterwards carries the per-layer widths.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compress/core/units.h"
#include "compress/io/model_loader.h"
#include "compress/io/token_data.h"
#include "compress/model/transformer.h"
#include "compress/recipe/pass.h"

namespace slmc::prune {

// Whole units (head groups, channels, blocks) a sparsity removes out of `count`: the nearest
// integer to count * sparsity (halves up), so "a quarter of 4 head groups" is one and "half of 5
// blocks" three. (Unstructured counts floor instead, as the references do: masks.h.)
int64_t removed_units(int64_t count, double sparsity);

// Units of a set that stay at `sparsity`: count - removed_units(count, sparsity); channels then
// rounded to the nearest multiple of `multiple` (ties down, at least `multiple`; a set smaller
// than `multiple` is not rounded). Throws naming `where`, the sparsity and the set when none
// would stay.
int64_t kept_units(const UnitSet& set, double sparsity, int64_t multiple, const std::string& where);

// `spec` with set `set` of its layer cut to `kept` units: heads set n_kv_head = kept and n_head =
// kept * (n_head / n_kv_head); channels set ffn_dim = kept (every expert of a layer alike).
ModelSpec spec_with_units(const ModelSpec& spec, const UnitSet& set, int64_t kept);

// Importance per unit (count,) float64, higher = keep.
//  activations: the energy the unit sends through its consumer on the calibration inputs,
//    tr(W[:, J] H[J, J] W[:, J]^T) with W the consumer (attn_output, ffn_down), J the unit's
//    columns and H the consumer's input Hessian: the output change removing the unit alone
//    makes, squared, summed over tokens.
//  weights: ||W_consumer[:, J]||_F times the norm of the unit's value path (attn_v rows for heads,
//    ffn_up and ffn_gate rows for channels), for use without calibration data.
torch::Tensor importance_from_activations(const UnitSet& set, const torch::Tensor& consumer,
                                          const torch::Tensor& H);
torch::Tensor importance_from_weights(const UnitSet& set,
                                      const std::map<std::string, torch::Tensor>& params);

// The `n_remove` least important units, ascending by index (ties: lower index removed first).
std::vector<int64_t> least_important(const torch::Tensor& importance, int64_t n_remove);

// Column mask (cols,) bool of the consumer for `removed` units of `set`.
torch::Tensor removed_columns(const UnitSet& set, const std::vector<int64_t>& removed);

// The consumer's least-squares compensation for its removed input columns R on the calibration
// inputs (H = sum x x^T over them): the kept columns K become W_K + W_R H_RK (H_KK + damp)^-1,
// which minimises ||W X - W'_K X_K||^2; removed columns become 0. float64 solve with the
// dampening escalation of compress/model/hessian.h.
torch::Tensor reconstruct_consumer(const torch::Tensor& W, const torch::Tensor& H,
                                   const torch::Tensor& removed_cols, double damp);

// Physically removes `removed` units of `set` from every tensor the set spans (and from their
// sparsity masks, if any). The caller updates the spec (spec_with_units).
void remove_units(TensorMap& tensors, std::map<std::string, SparsityMask>& masks,
                  const UnitSet& set, const std::vector<int64_t>& removed);

// ---- Depth ----

// Per block, how much it changes its input on the calibration tokens (higher = keep):
//  cosine: 1 - mean over tokens of cos(x_in, x_out) (ShortGPT's block influence);
//  loss: the calibration NLL of the model with that block skipped, minus the full model's.
// One walk through the blocks for cosine; n_layer + 1 forwards for loss.
std::vector<double> block_importance(const Transformer& tf, const CalibrationSet& cal,
                                     const std::string& metric, int64_t batch);

// Removes blocks `removed` (ascending indices) from `m` and renumbers the rest blk.0.. in order;
// masks follow their tensors. The spec loses those layers.
void remove_layers(LoadedModel& m, std::map<std::string, SparsityMask>& masks,
                   const std::vector<int64_t>& removed);

}  // namespace slmc::prune
