// GPTQ (Frantar et al. 2022, IST-DASLab/gptq `fasterquant`): quantizes a weight matrix one column
// at a time and spreads each column's rounding error over the columns not yet quantized, using
// the inverse Hessian of the layer's calibration inputs. Lazy block updates, Cholesky of the
// damped inverse, and act-order (columns by decreasing diag(H)) with static groups, so the result
// is stored in the codec's contiguous block formats (q8_0, q4_0, q4_g64, q4_g128).
#pragma once

#include <torch/types.h>

#include "quantize/codec/formats.h"
#include "quantize/quant_common.h"

namespace slmc::quant {

struct GptqOptions {
  double damp = 0.01;        // fraction of mean(diag H) added to the diagonal (percdamp)
  bool act_order = true;     // quantize columns in decreasing diag(H) order
  // Grids are chosen from the original weights before any update, block by block (GPTQ's
  // static_groups). Required with act_order (blocks are contiguous in the stored format); when
  // false (and act_order false), a block's grid is chosen from the updated weights when the
  // sweep reaches its first column, as in the reference. "Updated" means by every column
  // quantized so far, including those of the current lazy batch (the reference reads weights
  // that lack the current batch's updates when a format block starts inside a batch, e.g. q4_0
  // with block_size 128), so the result does not depend on block_size.
  bool static_groups = true;
  int64_t block_size = 128;  // columns per lazy batch update
  // Static grids: shrink each block's range by the factor in {1, 0.975, ..., 0.5} that minimises
  // the block's diag(H)-weighted squared rounding error (the reference's `mse` grid search, made
  // activation-aware). Off: the plain round-to-nearest grid.
  bool mse_grid = true;
  // Within a block, quantize q/k/v first, then collect attn_output's inputs through the
  // quantized q/k/v, then gate/up, then down (the reference's --true-sequential); off: every
  // group's Hessian comes from one pass with the block's original weights. Off by default: it was
  // worse on both bench models at q4_0 (stories260K KL 0.111 vs 0.098, wikitext5m 0.00123 vs
  // 0.00103) and costs a forward per group.
  bool true_sequential = false;
  // Rounds of scale refitting after the sweep: with the codes fixed, every row's block scales are
  // solved jointly for the least output error (H-weighted least squares), then the sweep reruns
  // on the new grids and each row keeps the better codes. 0 = the reference's scales. A row's
  // error only ever falls. Measured at q4_0 (KL vs RTN's): stories260K on 15k held-out tokens
  // 0.0605 -> 0.0561 with 2 rounds (3-4 rounds: 0.0559), wikitext5m 0.00102 -> 0.00100.
  int refit = 2;
  // Asymmetric calibration (GPTAQ, Li et al. 2025): the quantized layer's target is the
  // unquantized model's output for the unquantized model's input, not its own output for the
  // quantized stream's input, so each layer also corrects the error the layers before it left.
  // The least-squares target W' = W + asym_calib * W D H^-1 (see gptq_asym_target) is quantized
  // with plain GPTQ; asym_calib shrinks the correction (0 = plain GPTQ, 1 = the full
  // least-squares target). Costs a forward of the unquantized stream through every block, and
  // its activations. Dense layers only: an expert's routed tokens differ between the two
  // streams; and not a tied head (quantize_pass.cpp says why). Measured at q4_0 (KL, asym_calib 0
  // -> 0.75): stories260K 0.0953 -> 0.0830 on the TinyStories sample and 0.0561 -> 0.0486 on 15k
  // held-out tokens, wikitext5m 0.001005 -> 0.000986 (0.5: 0.0866, 0.0495, 0.00099; 1.0, tied head
  // included: 0.100, 0.051).
  double asym_calib = 0.75;

  template <class V>
  void visit(V& v) {
    v("damp", damp, "GPTQ: dampening, share of mean diag(H) added to the diagonal");
    v("act_order", act_order, "GPTQ: quantize columns by decreasing activation energy");
    v("static_groups", static_groups, "GPTQ: choose every group's grid before the updates");
    v("block_size", block_size, "GPTQ: columns per lazy batch update");
    v("mse_grid", mse_grid, "GPTQ: search each group's range for the least weighted error");
    v("true_sequential", true_sequential,
      "GPTQ: calibrate each linear group on the outputs of the already-quantized ones");
    v("refit", refit, "GPTQ: rounds of least-squares scale refitting after the sweep");
    v("asym_calib", asym_calib,
      "GPTQ: asymmetric calibration (GPTAQ): share of the correction toward the unquantized "
      "model's outputs, 0 = plain GPTQ");
  }
  void validate() const;  // throws slmc::Error naming the bad key and value
};

// W: (rows, cols) fp32 weights. H: (cols, cols) sum over calibration tokens of x x^T (any
// positive scale; not modified). Columns whose diag(H) is 0 (inputs never active) keep their
// weights and are rounded to nearest (the reference zeroes them; we do not, so such inputs still
// work after quantization); with `refit` their code stays and the value follows the block's
// refitted scale (they do not enter the loss the refit minimises). Throws slmc::Error if W or H
// is not finite, H is not (cols, cols), cols does not fit `f`, or the damped H is not positive
// definite even after raising the dampening tenfold twice.
//
// H is factored in float64; the inverse factor the sweep uses is formed and applied in fp32, like
// the reference's whole computation. Formats without an integer grid (f32, f16, bf16) fall back
// to rtn_quantize(W, f, H) after the same input checks: there are no codes to choose, and their
// rounding error (2^-9 relative at most) is too small for propagation to matter. Codes are chosen with Grid::code, so `dequant` holds exactly the values the sweep used.
//
// `pinned` (optional, (rows, cols) bool): weights a pruning pass removed. They are stored as
// exactly zero (their block's zero code: every grid holds 0 exactly) and their error spreads to
// the columns not yet quantized like any other's, as SparseGPT does with a fixed mask.
QuantResult gptq_quantize(const torch::Tensor& W, const torch::Tensor& H, codec::Format f,
                          const GptqOptions& o = {}, const torch::Tensor& pinned = {});

// The asymmetric-calibration target. With X the quantized stream's inputs (tokens x cols) and Xf
// the unquantized model's inputs at the same positions, H = X^T X and D = (Xf - X)^T X:
//   W' = W + alpha * W D (H + damp * mean(diag H) I)^-1.
// At alpha 1 (and no dampening) W' is the least-squares solution of W' X^T = W Xf^T, so
// |W Xf^T - Q X^T|^2 = |(W' - Q) X^T|^2 + const: GPTQ on (W', H) minimises the asymmetric
// objective. Computed in float64; columns with diag(H) = 0 get a unit diagonal and the dampening
// rises tenfold twice if needed, as in gptq_quantize. Throws slmc::Error on shape mismatches,
// non-finite input, alpha outside [0, 1], or an H that is not positive definite even then.
torch::Tensor gptq_asym_target(const torch::Tensor& W, const torch::Tensor& H,
                               const torch::Tensor& D, double alpha, double damp);

}  // namespace slmc::quant
