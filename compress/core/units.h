// Structural units of a block: which rows and columns of which tensors belong to one attention
// head group and to one FFN channel. Structured pruning removes units through this table, AWQ's
// folding rule (linear_groups) asks it whether a producer's output rows map one-to-one onto a
// consumer's input columns, and any code that needs the head layout reads it here instead of
// rebuilding it.
//
// Attention: the unit is a KV group, KV head g with the n_head / n_kv_head query heads that read
// it (query heads are grouped contiguously: query head h reads KV head h / (n_head / n_kv_head),
// as the model's repeat_interleave does). Without GQA a group is one head. Removing whole groups
// keeps every remaining query head's KV head, so GQA stays valid.
// FFN: the unit is one hidden channel c: row c of gate and up (and their biases), column c of down;
// in an MoE block each expert has its own set.
// Tensors no set mentions (norms, q/k norms over head_dim, the router, the output biases, the
// embedding and head) are not split by units.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/core/model_spec.h"

namespace slmc {

enum class UnitKind { kHeads, kChannels };  // KV groups of attention heads; FFN channels
const char* unit_kind_name(UnitKind k);     // "heads", "channels" (persisted)
bool unit_kind_from_name(const std::string& name, UnitKind* out);

// One tensor's share of every unit: unit u covers [u * width, (u + 1) * width) along `axis`.
struct UnitSlice {
  std::string tensor;  // canonical name
  int axis = 0;        // 0: rows (and 1-D biases), 1: columns
  int64_t width = 1;
  bool consumer = false;  // the linear the units' outputs leave through (attn_output, ffn_down)
};

struct UnitSet {
  UnitKind kind = UnitKind::kHeads;
  int64_t layer = 0;
  int64_t expert = -1;            // MoE expert, -1 for dense
  int64_t count = 0;              // units: n_kv_head or ffn_dim
  std::vector<UnitSlice> slices;  // every tensor the units span, producers first

  const UnitSlice& consumer() const;                       // the one consumer slice
  const UnitSlice* find(const std::string& tensor) const;  // nullptr if not spanned
  std::string name() const;  // "blk.3 heads", "blk.3 expert.1 channels"
};

// The unit sets of block `layer`: heads first, then channels (one set per expert in MoE blocks).
std::vector<UnitSet> unit_sets(const ModelSpec& spec, int64_t layer);

// Whether row block u of `producer` feeds exactly column block u of the set's consumer, for
// every u (the widths are equal): then scaling the consumer's input columns can be undone in the
// producer's rows (AWQ's fold). False if either tensor is not in the set.
bool feeds_one_to_one(const UnitSet& set, const std::string& producer);

}  // namespace slmc
