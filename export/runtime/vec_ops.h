// fp32 vector operations of the forward pass outside the matmuls: RMSNorm's sum of squares and
// attention over the KV cache. Explicit SIMD by ISA (the compiler does not vectorize float
// reductions without -ffast-math), chosen per call from the session's ISA.
#pragma once

#include <cstdint>

#include "export/runtime/kernels.h"

namespace slmc::runtime {

float dot_f32(const float* a, const float* b, int64_t n, Isa isa);

// One attention head over cached positions [lo, hi]: scores[j] = scale * q . k_j, softmax over
// them, then out = sum_j p_j v_j. Key/value j of this head start at k + j * stride and
// v + j * stride; `scores` has room for hi + 1 values; `out` (hd) is overwritten.
void attend(const float* q, const float* k, const float* v, int64_t stride, int64_t hd,
            int64_t lo, int64_t hi, float scale, float* scores, float* out, Isa isa);

// attend() of two heads over the same positions (e.g. heads h and h + 1 of one token), with
// the same results; the AVX-512 path interleaves their weighted sums.
void attend2(const float* q0, const float* q1, const float* k0, const float* k1, const float* v0,
             const float* v1, int64_t stride, int64_t hd, int64_t lo, int64_t hi, float scale,
             float* scores0, float* scores1, float* out0, float* out1, Isa isa);

// g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] with std::exp's results bit for bit
// (the AVX-512 path evaluates glibc's expf on 16 lanes).
void silu_mul(float* g, const float* u, int64_t n, Isa isa);

// y[i] = std::exp(x[i]) bit for bit (x == y allowed); exposed for the tests.
void exp_f32(const float* x, float* y, int64_t n, Isa isa);

}  // namespace slmc::runtime
