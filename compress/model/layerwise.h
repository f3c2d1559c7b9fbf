// The layer-by-layer calibration walk every calibrated method shares (GPTQ, AWQ, Wanda,
// SparseGPT, structured pruning): the calibration batch is embedded, then for each block in turn
// hooks collect what the method asks for at the inputs of the block's linear groups (chunks of
// `batch` sequences at a time), the method compresses the block's linears in place, and the
// compressed block's outputs become the next block's inputs. Peak memory holds one block's
// activations for the batch (two with the second stream) whatever the depth. The output head is
// the last step, on the final hidden states.
//
// A method is what it collects per group (request) and how it compresses a stage's groups from
// that (compress): llm-compressor's calibrate_module / compress_modules split.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compress/core/tensor_names.h"
#include "compress/io/token_data.h"
#include "compress/model/transformer.h"

namespace slmc {

// What to collect at the input x (tokens, cols) of one linear group.
struct GroupRequest {
  bool hessian = true;        // H = sum x x^T
  bool col_sq = false;        // sum over tokens of x_j^2, per column (the diagonal of H alone)
  bool pair = false;          // D = (xf - x)^T x against the second stream, token by token
                              // (LayerwiseOptions::second_stream; experts cannot pair)
  int64_t sample_stride = 0;  // > 0: keep every stride-th input row of every chunk
};

struct GroupStats {
  torch::Tensor H;                     // (cols, cols) fp32
  torch::Tensor D;                     // (cols, cols) fp32, pair
  torch::Tensor col_sq;                // (cols) fp32
  std::vector<torch::Tensor> samples;  // (rows_c, cols) per chunk
  int64_t rows = 0;  // calibration tokens seen (an expert's group: only those routed to it)
};
using StageStats = std::map<std::string, GroupStats>;  // by LinearGroup::name

// One step of the walk: a block's groups whose inputs were just collected.
struct LayerStage {
  int64_t layer = 0;                // -1: the output head
  std::vector<LinearGroup> groups;  // the requested groups of this stage, in linear_groups order
};

class LayerwiseMethod {
 public:
  virtual ~LayerwiseMethod() = default;
  // What to collect for group `g` of block `layer` (-1 and head_group() for the head); nullopt:
  // the group is not compressed, and nothing is hooked for it.
  virtual std::optional<GroupRequest> request(int64_t layer, const LinearGroup& g) const = 0;
  // Once, after the second stream embedded the calibration tokens and before the compressed
  // stream does (the quantize pass rounds an untied embedding here: it is looked up, not
  // multiplied, so the blocks must be calibrated on the rounded table).
  virtual void before_walk(Transformer& tf) {}
  // Compresses the linears of `stage.groups` in tf.params() in place, from `stats` (groups that
  // saw no token, such as an expert no token was routed to, have no entry).
  virtual void compress(const LayerStage& stage, StageStats& stats, Transformer& tf) = 0;
};

struct LayerwiseOptions {
  int64_t batch = 4;  // calibration sequences per forward chunk
  // One stage per dataflow order of the block (attn_in, attn_out, ffn_in, ffn_out), each
  // collected through the already-compressed groups before it (GPTQ's true-sequential).
  bool sequential = false;
  // Run the uncompressed model's stream beside the compressed one (for `pair` requests): each
  // block's weights as they were before its compression are swapped in whenever it runs.
  bool second_stream = false;
  bool head = true;                 // calibrate the output head after the blocks
  std::string label = "calibrate";  // progress bar
};

struct LayerwiseTimes {
  double collect = 0;    // forwards with hooks
  double compress = 0;   // the method's compress()
  double propagate = 0;  // forwards through each block once compressed
};

// Walks `tf` over `cal` (rows of equal length; ids checked against the vocab by embed). Throws
// slmc::Error naming the data and the linear when an activation is not finite.
LayerwiseTimes run_layerwise(Transformer& tf, const CalibrationSet& cal, LayerwiseMethod& method,
                             const LayerwiseOptions& o);

// The calibration tokens each expert of an MoE block saw in `stats` (-1: not requested), and the
// report line "blk.i calibration tokens per expert (top-k of n): [...]" with the experts below
// `min_rows` listed after `what_below` ("" when none of the block's expert groups was requested).
std::string expert_coverage_note(const ModelSpec& spec, const LayerStage& stage,
                                 const StageStats& stats, int64_t min_rows,
                                 const std::string& what_below);

// The first `n` rows of `cal` as (n, T) int64; throws naming the data if rows differ in length.
torch::Tensor calibration_tokens(const CalibrationSet& cal, int64_t n);

}  // namespace slmc
