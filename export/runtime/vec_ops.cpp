#include "export/runtime/vec_ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "export/runtime/reduce_avx512.h"

namespace slmc::runtime {

namespace {

float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (float v : acc) s += v;
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_scalar(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float s = _mm_cvtss_f32(h);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// The 16 lanes dot_avx512 reduces (its whole computation but the final reduction).
__attribute__((target("avx512f"), always_inline)) inline __m512 dot_lanes_avx512(const float* a,
                                                                                const float* b,
                                                                                int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
  if (i < n) {  // masked tail: no scalar loop, no read past the end
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
  }
  return _mm512_add_ps(s0, s1);
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
  return _mm512_reduce_add_ps(dot_lanes_avx512(a, b, n));
}

// scores[j] = dot(q, key j) * scale for j in [lo, hi], each dot exactly dot_avx512's.
__attribute__((target("avx512f"))) void scores_avx512(const float* q, const float* k,
                                                      int64_t stride, int64_t hd, int64_t lo,
                                                      int64_t hi, float scale, float* scores) {
  const __m512 sc = _mm512_set1_ps(scale);
  int64_t j = lo;
  for (; j + 16 <= hi + 1; j += 16) {
    __m512 v[16];
    for (int s = 0; s < 16; ++s) v[s] = dot_lanes_avx512(q, k + (j + 4 * (s % 4) + s / 4) * stride, hd);
    _mm512_storeu_ps(scores + j, _mm512_mul_ps(avx512::reduce16(v), sc));
  }
  for (; j <= hi; ++j) scores[j] = dot_avx512(q, k + j * stride, hd) * scale;
}

template <float (*Dot)(const float*, const float*, int64_t)>
void scores_by_dot(const float* q, const float* k, int64_t stride, int64_t hd, int64_t lo,
                   int64_t hi, float scale, float* scores) {
  for (int64_t j = lo; j <= hi; ++j) scores[j] = Dot(q, k + j * stride, hd) * scale;
}

// out_h (hd) = sum over j in [lo, hi] of p_h[j] * v_h[j * stride ...] for NH heads at once (same
// keys), accumulated in increasing j with one FMA per element and key: exactly what a loop of
// y += p[j] * v_j into a zeroed y computes, but with the outputs held in registers across the keys
// (no store-to-load round trip per key), and with two heads the FMA chains interleave, so the
// loop runs at FMA throughput instead of FMA latency.
template <int NH, int NV>  // NV vectors of 16 outputs per head; the last may be partial (mask)
__attribute__((target("avx512f"), always_inline)) inline void weighted_sum_avx512_chunk(
    const float* const* p, const float* const* v, int64_t stride, int64_t lo, int64_t hi,
    int64_t n, float* const* out) {
  __m512 acc[NH][NV];
  for (int h = 0; h < NH; ++h)
    for (int i = 0; i < NV; ++i) acc[h][i] = _mm512_setzero_ps();
  const int64_t tail = n - 16 * (NV - 1);  // 1..16 outputs in the last vector
  const __mmask16 m = static_cast<__mmask16>(tail >= 16 ? 0xffffu : (1u << tail) - 1);
  for (int64_t j = lo; j <= hi; ++j) {
    for (int h = 0; h < NH; ++h) {
      const __m512 a = _mm512_set1_ps(p[h][j]);
      const float* x = v[h] + j * stride;
      for (int i = 0; i + 1 < NV; ++i)
        acc[h][i] = _mm512_fmadd_ps(a, _mm512_loadu_ps(x + 16 * i), acc[h][i]);
      acc[h][NV - 1] =
          _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + 16 * (NV - 1)), acc[h][NV - 1]);
    }
  }
  for (int h = 0; h < NH; ++h) {
    for (int i = 0; i + 1 < NV; ++i) _mm512_storeu_ps(out[h] + 16 * i, acc[h][i]);
    _mm512_mask_storeu_ps(out[h] + 16 * (NV - 1), m, acc[h][NV - 1]);
  }
}

// weighted_sum_avx512_chunk with the smallest NV >= nv (NV counts down from the widest).
template <int NH, int NV>
__attribute__((target("avx512f"), always_inline)) inline void weighted_sum_avx512_nv(
    int64_t nv, const float* const* p, const float* const* v, int64_t stride, int64_t lo,
    int64_t hi, int64_t n, float* const* out) {
  if constexpr (NV > 1) {
    if (nv < NV) return weighted_sum_avx512_nv<NH, NV - 1>(nv, p, v, stride, lo, hi, n, out);
  }
  weighted_sum_avx512_chunk<NH, NV>(p, v, stride, lo, hi, n, out);
}

// 128 accumulated outputs per pass in all: 128 of one head or 64 of each of two.
// p, v, out: NH pointers each.
template <int NH>
__attribute__((target("avx512f"))) void weighted_sum_avx512(const float* const* p,
                                                             const float* const* v, int64_t stride,
                                                             int64_t lo, int64_t hi, int64_t hd,
                                                             float* const* out) {
  constexpr int kMaxNV = 8 / NH;
  for (int64_t c = 0; c < hd; c += 16 * kMaxNV) {
    const int64_t n = std::min<int64_t>(16 * kMaxNV, hd - c);
    float* oc[NH];
    const float* vc[NH];
    for (int h = 0; h < NH; ++h) {
      oc[h] = out[h] + c;
      vc[h] = v[h] + c;
    }
    weighted_sum_avx512_nv<NH, kMaxNV>((n + 15) / 16, p, vc, stride, lo, hi, n, oc);
  }
}

// The one-head form attend_impl takes.
__attribute__((target("avx512f"))) void weighted_sum1_avx512(const float* p, const float* v,
                                                              int64_t stride, int64_t lo,
                                                              int64_t hi, int64_t hd, float* out) {
  weighted_sum_avx512<1>(&p, &v, stride, lo, hi, hd, &out);
}

// The AVX2 counterpart of weighted_sum_avx512 for whole vectors of 8; the hd % 8 tail
// runs in scalar code, in the same order.
template <int NV>
__attribute__((target("avx2,fma"), always_inline)) inline void weighted_sum_avx2_chunk(
    const float* p, const float* v, int64_t stride, int64_t lo, int64_t hi, float* out) {
  __m256 acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t j = lo; j <= hi; ++j) {
    const __m256 a = _mm256_set1_ps(p[j]);
    const float* x = v + j * stride;
    for (int i = 0; i < NV; ++i) acc[i] = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + 8 * i), acc[i]);
  }
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

__attribute__((target("avx2,fma"))) void weighted_sum_avx2(const float* p, const float* v,
                                                           int64_t stride, int64_t lo, int64_t hi,
                                                           int64_t hd, float* out) {
  const int64_t whole = hd / 8 * 8;
  int64_t c = 0;
  for (; c + 64 <= whole; c += 64) weighted_sum_avx2_chunk<8>(p, v + c, stride, lo, hi, out + c);
  for (; c + 32 <= whole; c += 32) weighted_sum_avx2_chunk<4>(p, v + c, stride, lo, hi, out + c);
  for (; c < whole; c += 8) weighted_sum_avx2_chunk<1>(p, v + c, stride, lo, hi, out + c);
  for (; c < hd; ++c) {
    float acc = 0.0f;
    for (int64_t j = lo; j <= hi; ++j) acc += p[j] * v[j * stride + c];
    out[c] = acc;
  }
}

void weighted_sum_scalar(const float* p, const float* v, int64_t stride, int64_t lo, int64_t hi,
                         int64_t hd, float* out) {
  std::memset(out, 0, static_cast<size_t>(hd) * sizeof(float));
  for (int64_t j = lo; j <= hi; ++j) axpy_scalar(p[j], v + j * stride, out, hd);
}

// scores[lo..hi] = softmax of the scaled scores of q against the keys.
template <void (*Scores)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                         float*)>
void softmax_scores(const float* q, const float* k, int64_t stride, int64_t hd, int64_t lo,
                    int64_t hi, float scale, float* scores) {
  Scores(q, k, stride, hd, lo, hi, scale, scores);
  float mx = -INFINITY;
  for (int64_t j = lo; j <= hi; ++j) mx = std::max(mx, scores[j]);
  float sum = 0;
  for (int64_t j = lo; j <= hi; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = lo; j <= hi; ++j) scores[j] *= inv;
}

template <void (*Scores)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                         float*),
          void (*WeightedSum)(const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                              float*)>
void attend_impl(const float* q, const float* k, const float* v, int64_t stride, int64_t hd,
                 int64_t lo, int64_t hi, float scale, float* scores, float* out) {
  softmax_scores<Scores>(q, k, stride, hd, lo, hi, scale, scores);
  WeightedSum(scores, v, stride, lo, hi, hd, out);
}

}  // namespace

float dot_f32(const float* a, const float* b, int64_t n, Isa isa) {
  switch (vector_isa(isa)) {
    case Isa::kAvx512:
      return dot_avx512(a, b, n);
    case Isa::kAvx2:
      return dot_avx2(a, b, n);
    default:
      return dot_scalar(a, b, n);
  }
}

void attend(const float* q, const float* k, const float* v, int64_t stride, int64_t hd,
            int64_t lo, int64_t hi, float scale, float* scores, float* out, Isa isa) {
  switch (vector_isa(isa)) {
    case Isa::kAvx512:
      return attend_impl<scores_avx512, weighted_sum1_avx512>(q, k, v, stride, hd, lo, hi, scale, scores, out);
    case Isa::kAvx2:
      return attend_impl<scores_by_dot<dot_avx2>, weighted_sum_avx2>(q, k, v, stride, hd, lo, hi, scale, scores, out);
    default:
      return attend_impl<scores_by_dot<dot_scalar>, weighted_sum_scalar>(q, k, v, stride, hd, lo, hi, scale, scores, out);
  }
}

void attend2(const float* q0, const float* q1, const float* k0, const float* k1, const float* v0,
             const float* v1, int64_t stride, int64_t hd, int64_t lo, int64_t hi, float scale,
             float* scores0, float* scores1, float* out0, float* out1, Isa isa) {
  if (vector_isa(isa) == Isa::kAvx512) {
    softmax_scores<scores_avx512>(q0, k0, stride, hd, lo, hi, scale, scores0);
    softmax_scores<scores_avx512>(q1, k1, stride, hd, lo, hi, scale, scores1);
    const float* const p[2] = {scores0, scores1};
    const float* const v[2] = {v0, v1};
    float* const out[2] = {out0, out1};
    weighted_sum_avx512<2>(p, v, stride, lo, hi, hd, out);
    return;
  }
  attend(q0, k0, v0, stride, hd, lo, hi, scale, scores0, out0, isa);
  attend(q1, k1, v1, stride, hd, lo, hi, scale, scores1, out1, isa);
}

}  // namespace slmc::runtime
