// ggml's K-quants (super-blocks of 256 weights): Q4_K, Q5_K, Q6_K and Q8_K, ported from
// llama.cpp's ggml/src/ggml-quants.c (node-llama-cpp 3.22.1's bundled release) operation for
// operation, so that the bytes equal ggml's (tests/codec/kquant_test.cpp holds them to goldens
// computed with ggml itself and to gguf-py's numpy dequantizers). Block structs are in formats.h.
// Codec-internal: formats.cpp dispatches to these; other code uses formats.h.
#pragma once

#include <cstdint>

#include "quantize/codec/formats.h"

namespace slmc::codec::kquants {

inline constexpr int kQK = 256;  // QK_K: weights per super-block

// quantize_row_qX_K_ref: ggml's round to nearest (what llama-quantize does without an imatrix).
void quantize_q4_k_ref(const float* x, int64_t nb, BlockQ4_K* y);
void quantize_q5_k_ref(const float* x, int64_t nb, BlockQ5_K* y);
void quantize_q6_k_ref(const float* x, int64_t nb, BlockQ6_K* y);
void quantize_q8_k_ref(const float* x, int64_t nb, BlockQ8_K* y);

// quantize_row_qX_K_impl with quant_weights (what llama-quantize does with an imatrix): `qw` holds
// one non-negative importance per weight (nb * 256 values).
void quantize_q4_k_weighted(const float* x, int64_t nb, const float* qw, BlockQ4_K* y);
void quantize_q5_k_weighted(const float* x, int64_t nb, const float* qw, BlockQ5_K* y);
void quantize_q6_k_weighted(const float* x, int64_t nb, const float* qw, BlockQ6_K* y);

// dequantize_row_qX_K.
void dequantize_q4_k(const BlockQ4_K* x, int64_t nb, float* y);
void dequantize_q5_k(const BlockQ5_K* x, int64_t nb, float* y);
void dequantize_q6_k(const BlockQ6_K* x, int64_t nb, float* y);
void dequantize_q8_k(const BlockQ8_K* x, int64_t nb, float* y);

// ggml's get_scale_min_k4: the 6-bit scale and min codes of sub-block j (0..7) of a Q4_K/Q5_K block.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}
// The inverse: packs 8 scale and 8 min codes (each < 64) into the 12 scale bytes.
void set_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* scales);

}  // namespace slmc::codec::kquants
