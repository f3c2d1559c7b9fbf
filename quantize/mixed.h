// Mixed precision under a size budget: given, for every tensor, the bytes and the measured error
// of each candidate format, choose one format per tensor so that the total bytes land within the
// budget and the summed error is as small as possible (a multiple-choice knapsack).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantize/codec/formats.h"

namespace slmc::quant {

struct FormatCost {
  codec::Format format = codec::Format::kF16;
  uint64_t bytes = 0;  // stored bytes of the tensor in this format
  double error = 0;    // its sensitivity (e.g. KL of the final logits, >= 0); additive over tensors
};

struct TensorChoices {
  std::string name;
  int64_t n_weights = 0;
  std::vector<FormatCost> options;  // at least one
};

struct Allocation {
  std::vector<size_t> choice;  // per tensor: index into its options
  uint64_t bytes = 0;          // total stored bytes
  double error = 0;            // summed error
  double bits_per_weight = 0;  // 8 * bytes / total weights
};

// Minimises the summed error subject to bytes <= budget_bytes; the result never exceeds the
// budget. Only options that are not dominated (another option of the tensor is no larger and no
// worse) are ever chosen, so a budget that allows more than every tensor's best option leaves
// bytes unused; otherwise what is left is smaller than any single upgrade that would reduce the
// error. Method: the Lagrangian relaxation (each tensor on the lower convex hull of its (bytes,
// error) points; walking the hull segments by error saved per byte is walking lambda down) gives
// the best hull solution under the budget; greedy upgrades spend the remaining bytes, pair
// exchanges polish it, and a depth-first branch and bound pruned by the linear relaxation proves
// it optimal or improves it. The branch and bound stops after `max_search_nodes` nodes (0: the
// heuristic alone); below that limit the result is an exact optimum.
// Throws slmc::Error for an empty tensor list; naming the tensor for an empty option list, zero
// weights or a non-finite or negative error; and naming both numbers when the smallest options
// of all tensors together exceed the budget.
inline constexpr uint64_t kDefaultSearchNodes = 200000;
Allocation allocate_formats(const std::vector<TensorChoices>& tensors, uint64_t budget_bytes,
                            uint64_t max_search_nodes = kDefaultSearchNodes);

}  // namespace slmc::quant
