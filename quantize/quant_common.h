// What every PTQ method shares: the result of quantizing one weight matrix, plain round to nearest
// (the baseline), and the output error a calibration Hessian assigns to a quantized matrix.
#pragma once

#include <torch/types.h>

#include "quantize/codec/formats.h"

namespace slmc::quant {

// One quantized weight matrix.
struct QuantResult {
  codec::QTensor packed;   // the bytes to store (format, shape (rows, cols))
  torch::Tensor dequant;   // (rows, cols) fp32: exactly the values `packed` decodes to
  codec::Distortion dist;  // against the weights the method was given
  // tr((W - Q) H (W - Q)^T) / tr(W H W^T): the relative output error on the calibration inputs
  // (H = sum of x x^T). -1 when no Hessian was given.
  double rel_output_error = -1;
};

// How round to nearest chooses its grids beyond the format's default (one grid per block).
struct GridRule {
  bool symmetric = false;    // q4_g64/q4_g128: zero point 8 and q4_0's scale (codec::choose_grid)
  bool per_channel = false;  // one grid per row, shared by all of its blocks (from the whole row)
  bool is_default() const { return !symmetric && !per_channel; }
};

// Round to nearest in `f` (any codec format; plain floats round too). `clip`, if defined, is
// (rows, cols / block_size) float: each block's range is shrunk by that factor before its grid
// is chosen (AWQ's clipping search); it needs a format with a grid. `H` (cols, cols), if defined,
// fills rel_output_error. A non-default `rule` needs a format with a grid, and per_channel
// takes no clip.
QuantResult rtn_quantize(const torch::Tensor& W, codec::Format f,
                         const torch::Tensor& H = torch::Tensor(),
                         const torch::Tensor& clip = torch::Tensor(), const GridRule& rule = {});

// Packs `dequant`-consistent codes: builds a QuantResult from W (the original weights, for the
// distortion), the chosen codes (rows, cols) int32 and grids (rows x grids per row, row-major;
// a grid per block, or per sub-block for the K-quants: FormatInfo::grid_size).
QuantResult pack_result(const torch::Tensor& W, codec::Format f, const torch::Tensor& codes,
                        const std::vector<codec::Grid>& grids, const torch::Tensor& H);

// Q's distortion against the original W (the per-tensor report figures).
codec::Distortion distortion(const torch::Tensor& W, const torch::Tensor& Q);

// tr((W - Q) H (W - Q)^T) / tr(W H W^T); 0 if the denominator is 0.
double rel_output_error(const torch::Tensor& W, const torch::Tensor& Q, const torch::Tensor& H);

}  // namespace slmc::quant
