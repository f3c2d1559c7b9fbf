// The `prune` pass: unstructured and N:M sparsity (magnitude, Wanda, SparseGPT) recorded as
// sparsity masks that later passes keep, and structured pruning that physically removes attention
// head groups, FFN channels or whole blocks. Policy and defaults: prune/README.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "compress/recipe/pass.h"
#include "compress/recipe/selector.h"

namespace slmc::prune {

struct PruneOptions {
  std::string method;           // magnitude | wanda | sparsegpt (unstructured or N:M)
  double sparsity = -1;         // [0, 1): share of weights (or units, or blocks) removed
  std::string pattern;          // "N:M": at most N kept weights in every M consecutive of a row
  std::string scope = "layer";  // magnitude: a threshold per tensor, or one over all targets
  std::string structured;       // heads | channels | layers: remove whole units instead
  std::string importance = "activations";  // heads/channels: activations | weights
  bool reconstruct = true;  // heads/channels from activations: least-squares refit of the
                            // consumer (attn_output, ffn_down) on the kept units
  int64_t multiple = 32;    // channels: kept channels rounded to a multiple (q4_0 blocks)
  std::string layer_metric = "cosine";  // layers: cosine (block influence) | loss
  PatternList targets;                  // empty = every linear of every block
  PatternList ignore;
  int64_t calib_batch = 4;       // calibration sequences per forward chunk
  int64_t moe_min_tokens = 128;  // experts routed fewer tokens fall back to magnitude/weights
  double damp = 0.01;            // sparsegpt and reconstruction: share of mean diag(H)
  int64_t block_size = 128;      // sparsegpt: columns per lazy batch and mask block

  template <class V>
  void visit(V& v) {
    v("method", method, "magnitude | wanda | sparsegpt (unstructured or --pattern N:M)");
    v("sparsity", sparsity,
      "share removed, in [0, 1): of each tensor's weights (Wanda: of each row's), or of the "
      "units with structured, or of the blocks with structured layers");
    v("pattern", pattern, "N:M sparsity: at most N kept weights in every M consecutive (2:4, 4:8)");
    v("scope", scope, "magnitude: layer (a threshold per tensor) or global (one over all targets)");
    v("structured", structured, "heads | channels | layers: remove whole units physically");
    v("importance", importance, "heads/channels: activations (calibration) or weights");
    v("reconstruct", reconstruct,
      "heads/channels from activations: refit attn_output/ffn_down on the kept units");
    v("multiple", multiple, "channels: round the kept count to a multiple (1 = exact)");
    v("layer_metric", layer_metric, "layers: cosine (block input/output) or loss (NLL without it)");
    v("targets", targets, "tensors to prune (names, suffixes like ffn_down, re:regex)");
    v("ignore", ignore, "tensors to leave as they are");
    v("calib_batch", calib_batch, "calibration sequences per forward chunk (memory)");
    v("moe_min_tokens", moe_min_tokens,
      "MoE: an expert routed fewer calibration tokens is pruned by its weights (reported)");
    v("damp", damp, "sparsegpt / reconstruct: dampening, share of mean diag(H)");
    v("block_size", block_size, "sparsegpt: columns per lazy batch and mask block");
  }
};

std::unique_ptr<Pass> make_prune_pass(PruneOptions o, OptionOrigins origins);

// Registers "prune" with the pass registry (from a recipe mapping).
void register_prune_pass();

}  // namespace slmc::prune
