#include "quantize/quant_common.h"

#include <torch/torch.h>

#include "compress/core/error.h"

namespace slmc::quant {

namespace {

torch::Tensor contiguous_f32(const torch::Tensor& t) {
  return t.to(torch::kFloat32).contiguous();
}

}  // namespace

codec::Distortion distortion(const torch::Tensor& W, const torch::Tensor& Q) {
  const torch::Tensor w = contiguous_f32(W), q = contiguous_f32(Q);
  return codec::measure_distortion(w.data_ptr<float>(), q.data_ptr<float>(), w.numel());
}

double rel_output_error(const torch::Tensor& W, const torch::Tensor& Q, const torch::Tensor& H) {
  // float32 products (float64 BLAS is several times slower and this is a report figure), summed
  // in float64.
  const torch::Tensor w = W.to(torch::kFloat32), h = H.to(torch::kFloat32);
  const torch::Tensor e = w - Q.to(torch::kFloat32);
  const double num = (e.matmul(h) * e).sum(torch::kFloat64).item<double>();
  const double den = (w.matmul(h) * w).sum(torch::kFloat64).item<double>();
  return den > 0 ? num / den : 0.0;
}

QuantResult rtn_quantize(const torch::Tensor& W, codec::Format f, const torch::Tensor& H,
                         const torch::Tensor& clip, const GridRule& rule) {
  SLMC_CHECK(W.dim() == 2, "rtn_quantize: weights must be 2-D, got ", W.dim(), "-D");
  const torch::Tensor w = contiguous_f32(W);
  const int64_t rows = w.size(0), cols = w.size(1);
  QuantResult r;
  r.packed.format = f;
  r.packed.shape = {rows, cols};
  if (clip.defined() || !rule.is_default()) {
    SLMC_CHECK(codec::has_grid(f), "rtn_quantize: ",
               clip.defined() ? "clipping" : "symmetric or per-channel grids",
               " need a format with a grid, got ", codec::format_info(f).name);
    SLMC_CHECK(!(clip.defined() && rule.per_channel),
               "rtn_quantize: per-channel grids take no per-block clip");
    SLMC_CHECK(!codec::is_k_quant(f), "rtn_quantize: ",
               clip.defined() ? "clipping" : "symmetric or per-channel grids", " do not apply to ",
               codec::format_info(f).name, ", whose super-blocks choose their own sub-block scales");
    const int bs = codec::format_info(f).block_size;
    const int64_t nblk = cols / bs;
    SLMC_CHECK(codec::row_fits(f, cols), "rtn_quantize: ", cols, " columns do not fit ",
               codec::format_info(f).name);
    torch::Tensor c;
    if (clip.defined()) {
      c = contiguous_f32(clip);
      SLMC_CHECK(c.dim() == 2 && c.size(0) == rows && c.size(1) == nblk,
                 "rtn_quantize: clip must be (", rows, ", ", nblk, ")");
    }
    torch::Tensor codes = torch::empty({rows, cols}, torch::kInt32);
    std::vector<codec::Grid> grids(static_cast<size_t>(rows * nblk));
    const float* wp = w.data_ptr<float>();
    const float* cp = clip.defined() ? c.data_ptr<float>() : nullptr;
    int32_t* qp = codes.data_ptr<int32_t>();
    for (int64_t i = 0; i < rows; ++i) {
      const codec::Grid row_grid =
          rule.per_channel ? codec::choose_grid(f, wp + i * cols, 1.0f, rule.symmetric, cols)
                           : codec::Grid{};
      for (int64_t b = 0; b < nblk; ++b) {
        const float* x = wp + i * cols + b * bs;
        const codec::Grid g =
            rule.per_channel ? row_grid
                             : codec::choose_grid(f, x, cp ? cp[i * nblk + b] : 1.0f, rule.symmetric);
        grids[static_cast<size_t>(i * nblk + b)] = g;
        for (int j = 0; j < bs; ++j) qp[i * cols + b * bs + j] = g.code(x[j]);
      }
    }
    return pack_result(w, f, codes, grids, H);
  }
  r.packed.bytes = codec::quantize_ref(f, w.data_ptr<float>(), rows, cols);
  std::vector<float> deq = codec::dequantize_ref(f, r.packed.bytes.data(), rows, cols);
  r.dequant = torch::from_blob(deq.data(), {rows, cols}, torch::kFloat32).clone();
  r.dist = distortion(w, r.dequant);
  if (H.defined()) r.rel_output_error = rel_output_error(w, r.dequant, H);
  return r;
}

QuantResult pack_result(const torch::Tensor& W, codec::Format f, const torch::Tensor& codes,
                        const std::vector<codec::Grid>& grids, const torch::Tensor& H) {
  const torch::Tensor w = contiguous_f32(W);
  const int64_t rows = w.size(0), cols = w.size(1);
  const int gs = codec::format_info(f).grid_size;  // weights per grid (a K-quant sub-block)
  SLMC_CHECK(gs > 0, "pack_result: format ", codec::format_info(f).name, " has no grid");
  SLMC_CHECK(codes.dim() == 2 && codes.size(0) == rows && codes.size(1) == cols,
             "pack_result: codes must be (", rows, ", ", cols, ")");
  SLMC_CHECK(static_cast<int64_t>(grids.size()) == rows * (cols / gs),
             "pack_result: need ", rows * (cols / gs), " grids, got ", grids.size());
  const torch::Tensor c = codes.to(torch::kInt32).contiguous();
  QuantResult r;
  r.packed.format = f;
  r.packed.shape = {rows, cols};
  const size_t rb = codec::row_bytes(f, cols);
  r.packed.bytes.resize(rb * static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i)
    codec::pack_row(f, c.data_ptr<int32_t>() + i * cols, grids.data() + i * (cols / gs), cols,
                    r.packed.bytes.data() + static_cast<size_t>(i) * rb);
  std::vector<float> deq = codec::dequantize_ref(f, r.packed.bytes.data(), rows, cols);
  r.dequant = torch::from_blob(deq.data(), {rows, cols}, torch::kFloat32).clone();
  r.dist = distortion(w, r.dequant);
  if (H.defined()) r.rel_output_error = rel_output_error(w, r.dequant, H);
  return r;
}

}  // namespace slmc::quant
