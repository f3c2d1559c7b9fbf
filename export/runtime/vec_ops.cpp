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

// ---- expf, bit for bit -----------------------------------------------------------------------
// glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, the FMA build __expf_fma that its ifunc picks on
// every CPU with AVX2 + FMA, so on every CPU that reaches the AVX-512 path) evaluated on 16
// lanes with exactly its double operations and its table (__exp2f_data): the results equal
// std::exp(float) bit for bit, which tests/runtime/vec_ops_test.cpp checks over every float in
// the range. Lanes glibc sends to its special-case path (|x| >= 88 or so, inf, nan) are
// recomputed with std::exp itself.
//   z = 32/ln2 x; kd = fma(32/ln2, x, 0x1.8p52) - 0x1.8p52 (round to int); r = fma(32/ln2, x, -kd)
//   s = 2^(k/32) (table entry T[k % 32] + (k << 47)); p = fma(fma(C0, r, C1), r^2, fma(C2, r, 1))
//   exp(x) = float(p * s)
alignas(64) constexpr uint64_t kExp2fTab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540};
constexpr uint64_t kExpInvLn2N = 0x40471547652b82fe;  // 32 / ln 2
constexpr uint64_t kExpShift = 0x4338000000000000;    // 0x1.8p52
constexpr uint64_t kExpC0 = 0x3ebc6af84b912394, kExpC1 = 0x3f2ebfce50fac4f3,
                   kExpC2 = 0x3f962e42ff0c52d6;

__attribute__((target("avx512f"), always_inline)) inline __m256 exp8_avx512(__m256 x) {
  const __m512d xd = _mm512_cvtps_pd(x);
  const __m512d inv = _mm512_castsi512_pd(_mm512_set1_epi64(static_cast<long long>(kExpInvLn2N)));
  const __m512d shift = _mm512_castsi512_pd(_mm512_set1_epi64(static_cast<long long>(kExpShift)));
  __m512d kd = _mm512_fmadd_pd(inv, xd, shift);
  const __m512i ki = _mm512_castpd_si512(kd);
  kd = _mm512_sub_pd(kd, shift);
  const __m512d r = _mm512_fmsub_pd(inv, xd, kd);
  const __m512i idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
  const __m512i t0 = _mm512_permutex2var_epi64(_mm512_load_si512(kExp2fTab), idx,
                                               _mm512_load_si512(kExp2fTab + 8));
  const __m512i t1 = _mm512_permutex2var_epi64(_mm512_load_si512(kExp2fTab + 16), idx,
                                               _mm512_load_si512(kExp2fTab + 24));
  const __mmask8 upper = _mm512_test_epi64_mask(idx, _mm512_set1_epi64(16));
  const __m512i t = _mm512_add_epi64(_mm512_mask_blend_epi64(upper, t0, t1), _mm512_slli_epi64(ki, 47));
  const __m512d sc = _mm512_castsi512_pd(t);
  const __m512d c0 = _mm512_castsi512_pd(_mm512_set1_epi64(static_cast<long long>(kExpC0)));
  const __m512d c1 = _mm512_castsi512_pd(_mm512_set1_epi64(static_cast<long long>(kExpC1)));
  const __m512d c2 = _mm512_castsi512_pd(_mm512_set1_epi64(static_cast<long long>(kExpC2)));
  const __m512d z = _mm512_fmadd_pd(r, c0, c1);
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(r, c2, _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(z, r2, y);
  return _mm512_cvtpd_ps(_mm512_mul_pd(y, sc));
}

// std::exp of 16 floats (see above).
__attribute__((target("avx512f"))) __m512 exp16_avx512(__m512 x) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
  const __m512 e = _mm512_castpd_ps(_mm512_insertf64x4(
      _mm512_castps_pd(_mm512_castps256_ps512(exp8_avx512(_mm512_castps512_ps256(x)))),
      _mm256_castps_pd(exp8_avx512(hi)), 1));
  // glibc's special path: top 12 bits of |x| >= those of 88.0f (0x42b0 0000 >> 20 = 0x42b; it
  // branches on abstop > 0x42a, i.e. >= 0x42b).
  const __m512i abstop = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 20),
                                          _mm512_set1_epi32(0x7ff));
  const __mmask16 special = _mm512_cmpgt_epi32_mask(abstop, _mm512_set1_epi32(0x42a));
  if (__builtin_expect(special == 0, 1)) return e;
  alignas(64) float xs[16], es[16];
  _mm512_store_ps(xs, x);
  _mm512_store_ps(es, e);
  for (int i = 0; i < 16; ++i)
    if (special >> i & 1) es[i] = std::exp(xs[i]);
  return _mm512_load_ps(es);
}

// g[i] = g[i] / (1 + exp(-g[i])) * u[i], the scalar expression's operations in its order.
// Lanes i..i+15 of n that exist (the last group is partial).
inline __mmask16 lanes16(int64_t i, int64_t n) {
  return n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
}

__attribute__((target("avx512f"))) void silu_mul_avx512(float* g, const float* u, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes16(i, n);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
    const __m512 e = exp16_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    const __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i)));
  }
}

// x[i] = exp(x[i] - mx) for i < n.
__attribute__((target("avx512f"))) void exp_shifted_avx512(float* x, float mx, int64_t n) {
  const __m512 m = _mm512_set1_ps(mx);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes16(i, n);
    _mm512_mask_storeu_ps(x + i, k, exp16_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m)));
  }
}

void exp_shifted_scalar(float* x, float mx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = std::exp(x[i] - mx);
}

// scores[lo..hi] = softmax of the scaled scores of q against the keys.
// Exp: exp_shifted_scalar or exp_shifted_avx512 (equal results); the sum stays sequential.
template <void (*Scores)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                         float*),
          void (*Exp)(float*, float, int64_t) = exp_shifted_scalar>
void softmax_scores(const float* q, const float* k, int64_t stride, int64_t hd, int64_t lo,
                    int64_t hi, float scale, float* scores) {
  Scores(q, k, stride, hd, lo, hi, scale, scores);
  float mx = -INFINITY;
  for (int64_t j = lo; j <= hi; ++j) mx = std::max(mx, scores[j]);
  Exp(scores + lo, mx, hi - lo + 1);
  float sum = 0;
  for (int64_t j = lo; j <= hi; ++j) sum += scores[j];
  const float inv = 1.0f / sum;
  for (int64_t j = lo; j <= hi; ++j) scores[j] *= inv;
}

template <void (*Scores)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                         float*),
          void (*WeightedSum)(const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                              float*),
          void (*Exp)(float*, float, int64_t) = exp_shifted_scalar>
void attend_impl(const float* q, const float* k, const float* v, int64_t stride, int64_t hd,
                 int64_t lo, int64_t hi, float scale, float* scores, float* out) {
  softmax_scores<Scores, Exp>(q, k, stride, hd, lo, hi, scale, scores);
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
      return attend_impl<scores_avx512, weighted_sum1_avx512, exp_shifted_avx512>(q, k, v, stride, hd, lo, hi, scale, scores, out);
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
    softmax_scores<scores_avx512, exp_shifted_avx512>(q0, k0, stride, hd, lo, hi, scale, scores0);
    softmax_scores<scores_avx512, exp_shifted_avx512>(q1, k1, stride, hd, lo, hi, scale, scores1);
    const float* const p[2] = {scores0, scores1};
    const float* const v[2] = {v0, v1};
    float* const out[2] = {out0, out1};
    weighted_sum_avx512<2>(p, v, stride, lo, hi, hd, out);
    return;
  }
  attend(q0, k0, v0, stride, hd, lo, hi, scale, scores0, out0, isa);
  attend(q1, k1, v1, stride, hd, lo, hi, scale, scores1, out1, isa);
}

void silu_mul(float* g, const float* u, int64_t n, Isa isa) {
  if (vector_isa(isa) == Isa::kAvx512) return silu_mul_avx512(g, u, n);
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void exp_f32(const float* x, float* y, int64_t n, Isa isa) {
  if (y != x) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
  if (vector_isa(isa) == Isa::kAvx512) return exp_shifted_avx512(y, 0.0f, n);
  exp_shifted_scalar(y, 0.0f, n);
}

}  // namespace slmc::runtime
