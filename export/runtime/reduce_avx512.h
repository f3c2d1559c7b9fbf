// Sixteen AVX-512 horizontal sums at once, bit-identical to sixteen _mm512_reduce_add_ps: shared
// by the decode matmul (16 rows' sums, kernels_avx512.cpp) and attention scores (16 keys' dots,
// vec_ops.cpp), so both keep the exact results of the one-at-a-time reductions they replace.
#pragma once

#include <immintrin.h>

namespace slmc::runtime::avx512 {

// Per 128-bit quarter: lanes 0-1 = a[0] + a[2], a[1] + a[3]; lanes 2-3 = the same of b.
__attribute__((target("avx512f"), always_inline)) inline __m512 add_pairs(__m512 a, __m512 b) {
  const __m512d ad = _mm512_castps_pd(a), bd = _mm512_castps_pd(b);
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(ad, bd)),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(ad, bd)));
}

// Lane k of the result = _mm512_reduce_add_ps(v[s]) for the slot s = 4 (k % 4) + k / 4, with
// exactly its additions: GCC reduces lanes i and i + 8, then i and i + 4, then i and i + 2,
// then i and i + 1 (fp addition is commutative bit for bit, so only the pairing matters). Four
// levels of shuffles and adds serve 16 vectors at once (15 shuffle pairs instead of 16 x 4).
__attribute__((target("avx512f"), always_inline)) inline __m512 reduce16(const __m512 (&v)[16]) {
  __m512 w[8], x[4];
#pragma GCC unroll 8
  for (int m = 0; m < 8; ++m)  // i + 8: lanes 0-7 from v[2m], 8-15 from v[2m + 1]
    w[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0xEE),
                         _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0x44));
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p)  // i + 4: quarter c = slot 4p + c
    x[p] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * p], w[2 * p + 1], 0xDD),
                         _mm512_shuffle_f32x4(w[2 * p], w[2 * p + 1], 0x88));
  // i + 2: quarter c, lanes 0-1 slot c (x[0]) / 8 + c (x[2]); lanes 2-3 slot 4 + c / 12 + c.
  const __m512 y0 = add_pairs(x[0], x[1]);
  const __m512 y1 = add_pairs(x[2], x[3]);
  // i + 1: lane 4c + r = slot 4r + c.
  return _mm512_add_ps(_mm512_shuffle_ps(y0, y1, 0x88), _mm512_shuffle_ps(y0, y1, 0xDD));
}

}  // namespace slmc::runtime::avx512
