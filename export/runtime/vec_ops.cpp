#include "export/runtime/vec_ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

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

__attribute__((target("avx2,fma"))) void axpy_avx2(float alpha, const float* x, float* y,
                                                    int64_t n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

__attribute__((target("avx512f"))) float dot_avx512(const float* a, const float* b, int64_t n) {
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
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx512f"))) void axpy_avx512(float alpha, const float* x, float* y,
                                                     int64_t n) {
  const __m512 av = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m,
                          _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i),
                                          _mm512_maskz_loadu_ps(m, y + i)));
  }
}

template <float (*Dot)(const float*, const float*, int64_t),
          void (*Axpy)(float, const float*, float*, int64_t)>
void attend_impl(const float* q, const float* k, const float* v, int64_t stride, int64_t hd,
                 int64_t lo, int64_t hi, float scale, float* scores, float* out) {
  float mx = -INFINITY;
  for (int64_t j = lo; j <= hi; ++j) {
    scores[j] = Dot(q, k + j * stride, hd) * scale;
    mx = std::max(mx, scores[j]);
  }
  float sum = 0;
  for (int64_t j = lo; j <= hi; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  const float inv = 1.0f / sum;
  std::memset(out, 0, static_cast<size_t>(hd) * sizeof(float));
  for (int64_t j = lo; j <= hi; ++j) Axpy(scores[j] * inv, v + j * stride, out, hd);
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
      return attend_impl<dot_avx512, axpy_avx512>(q, k, v, stride, hd, lo, hi, scale, scores, out);
    case Isa::kAvx2:
      return attend_impl<dot_avx2, axpy_avx2>(q, k, v, stride, hd, lo, hi, scale, scores, out);
    default:
      return attend_impl<dot_scalar, axpy_scalar>(q, k, v, stride, hd, lo, hi, scale, scores, out);
  }
}

}  // namespace slmc::runtime
