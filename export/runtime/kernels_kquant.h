// The K-quant matmul (Q4_K, Q5_K, Q6_K, Q8_K weights, fp32 activations), one template that each
// ISA unit instantiates with its own fp32 dot product, so the same code runs scalar, AVX2 and
// AVX-512: every 256-weight super-block of a row is dequantized once with the codec's reference
// (kquants.h: ggml's dequantize_row_qX_K, exact) into a cache-resident buffer, then dotted with
// every token's 256 activations. The result equals "dequantize with the _ref codec, then dense"
// up to fp32 summation order; activations are not quantized (Acts for these formats are fp32).
#pragma once

#include <cstdint>

#include "export/runtime/kernels_internal.h"
#include "quantize/codec/kquants.h"

namespace slmc::runtime::internal {

// w (256) -> out (256 fp32) for super-block `blk` of format `wf`.
// static: each ISA unit keeps its own copy (no cross-unit merging of code built for another ISA).
static inline void kquant_dequantize_block(codec::Format wf, const uint8_t* blk, float* out) {
  namespace kq = codec::kquants;
  switch (wf) {
    case codec::Format::kQ4_K:
      return kq::dequantize_q4_k(reinterpret_cast<const codec::BlockQ4_K*>(blk), 1, out);
    case codec::Format::kQ5_K:
      return kq::dequantize_q5_k(reinterpret_cast<const codec::BlockQ5_K*>(blk), 1, out);
    case codec::Format::kQ6_K:
      return kq::dequantize_q6_k(reinterpret_cast<const codec::BlockQ6_K*>(blk), 1, out);
    default:
      return kq::dequantize_q8_k(reinterpret_cast<const codec::BlockQ8_K*>(blk), 1, out);
  }
}

// Dot: float(const float* w, const float* x) over 256 values. Tokens go in tiles of 64 (one
// dequantized super-block serves the whole tile); no std:: code, as kernels_internal.h requires.
template <class Dot>
static void kquant_gemm(const GemmArgs& a, Dot dot) {
  constexpr int64_t kQK = codec::kquants::kQK, kTile = 64;
  const int64_t nb = a.n / kQK;
  const size_t bb = a.row_bytes / static_cast<size_t>(nb);
  alignas(64) float buf[kQK];
  float acc[kTile];  // (tile tokens): running sums of row r
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = a.w + static_cast<size_t>(r) * a.row_bytes;
    for (int64_t t0 = 0; t0 < a.x.T; t0 += kTile) {
      const int64_t nt = a.x.T - t0 < kTile ? a.x.T - t0 : kTile;
      for (int64_t t = 0; t < nt; ++t) acc[t] = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        kquant_dequantize_block(a.wf, row + static_cast<size_t>(b) * bb, buf);
        for (int64_t t = 0; t < nt; ++t) acc[t] += dot(buf, a.x.f32 + (t0 + t) * a.n + b * kQK);
      }
      for (int64_t t = 0; t < nt; ++t) a.y[(t0 + t) * a.ldy + r] = acc[t];
    }
  }
}

}  // namespace slmc::runtime::internal
