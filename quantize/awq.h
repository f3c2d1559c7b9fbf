// AWQ (Lin et al. 2023, mit-han-lab/llm-awq `auto_scale` / `auto_clip`): per-input-channel scales
// s that protect salient channels. W' = Q(W diag(s)) diag(s)^-1; the inverse scale is folded into
// whatever produces the input (the preceding RMSNorm weight, or the rows of the preceding linear),
// so the model's function is unchanged before quantization.
#pragma once

#include <torch/types.h>

#include <vector>

#include "quantize/codec/formats.h"
#include "quantize/quant_common.h"

namespace slmc::quant {

struct AwqOptions {
  int64_t grid = 20;          // ratios alpha in {0, 1/grid, ..., (grid-1)/grid}
  bool duo_scaling = true;    // s = mean|x|^a / mean|w|^(1-a) (AutoAWQ), else mean|x|^a (paper)
  bool clip = true;           // search a per-block range shrink after scaling (auto_clip)
  int64_t clip_grid = 20;     // shrink factors 1, 1 - 0.5/clip_grid, ..., down to 0.5
  int64_t max_tokens = 4096;  // calibration rows the searches use (an even subsample)

  template <class V>
  void visit(V& v) {
    v("awq_grid", grid, "AWQ: points of the scale-exponent grid");
    v("awq_duo_scaling", duo_scaling, "AWQ: divide by the weight magnitude too (AutoAWQ)");
    v("awq_clip", clip, "AWQ: search per-group clipping after scaling");
    v("awq_clip_grid", clip_grid, "AWQ: points of the clipping grid");
    v("awq_max_tokens", max_tokens, "AWQ: calibration rows used by the searches");
  }
  void validate() const;  // throws slmc::Error naming the bad key and value
};

struct AwqScaleResult {
  torch::Tensor scales;     // (cols) fp32, > 0; all ones when no ratio beat alpha = 0
  double best_ratio = 0;    // the chosen alpha
  double loss_plain = 0;    // sum over Ws of ||X W^T - X Q(W)^T||^2 / n_tokens (alpha = 0, s = 1)
  double loss_best = 0;     // the same with the chosen scales
};

// Ws: linears that read the same input (each (rows_i, cols)), X: (n_tokens, cols) samples of
// that input. Returns the scales minimising the summed output error of the group after
// quantizing every W diag(s) in `formats[i]` (RTN, exactly the codec's values) and dividing by s,
// over the grid of alpha (AutoAWQ `_search_best_scale`): x_mean = mean |x| per channel, w_mean =
// mean over the group's rows of |w| / max |w| of its quantization block (+1e-6), s = x_mean^a /
// (w_mean^(1-a) + 1e-4) (duo) or x_mean^a, clamped to >= 1e-4 and divided by sqrt(max s min s).
// s = 1 is always a candidate: the result is never worse than plain RTN on the samples. The
// losses use at most o.max_tokens evenly spaced rows of X (n_tokens in the loss is that count).
// Throws slmc::Error for invalid options, mismatched shapes or formats, a row length that does
// not fit a format's blocks, and non-finite weights or inputs.
AwqScaleResult awq_search_scales(const std::vector<torch::Tensor>& Ws, const torch::Tensor& X,
                                 const std::vector<codec::Format>& formats, const AwqOptions& o);

// Clipping search for one (already scaled) linear: for each (row, block), the shrink factor c in
// {1, 1 - 0.5 / clip_grid, ..., 0.5} of the block's range (codec::choose_grid's `scale`)
// minimising sum_t (x_tb . (w_b - q_b))^2 over min(o.max_tokens, 512) evenly spaced rows of X
// (AutoAWQ `_compute_best_clip`; blocks are scored independently, like AutoAWQ). Ties keep the
// larger factor, so blocks that clipping cannot improve keep 1. Returns (rows, cols /
// block_size) fp32 factors in [0.5, 1], for rtn_quantize's `clip`. `f` must have a grid. Throws
// like awq_search_scales.
torch::Tensor awq_search_clip(const torch::Tensor& W, const torch::Tensor& X, codec::Format f,
                              const AwqOptions& o);

// The searches' round to nearest: rtn_quantize(W, f).dequant, or rtn_quantize(W, f, {}, clip)
// .dequant when `clip` ((rows, cols / block_size) factors, formats with a grid only) is given,
// without packing a QTensor (the codec's scalar functions, rows in parallel). Any codec format;
// W (rows, cols) with cols a multiple of the block size.
torch::Tensor awq_fake_quantize(const torch::Tensor& W, codec::Format f,
                                const torch::Tensor& clip = torch::Tensor());

}  // namespace slmc::quant
