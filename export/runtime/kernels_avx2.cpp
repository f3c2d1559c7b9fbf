// AVX2 + FMA + F16C kernels (x86-64-v3). Built with -mavx2 -mfma -mf16c and called only after
// cpu_features.cpp saw those features and the OS's YMM state support.
//
// Integer formats use vpmaddubsw (unsigned x signed bytes -> int16 pairs) and vpmaddwd with ones
// (-> int32 lanes of 4 products). vpmaddubsw saturates at 32767, so Q8_0 uses the sign trick
// (|w| times sign(w) * a, at most 2 * 127 * 127) and the 4-bit formats sum at most 4 products of
// 15 * 127 per int16 before widening. Activation codes are in [-127, 127] in both planes of
// precise activations (kTwo), which take the same products with the q_hi and the q_lo codes and
// widen them as 256 * (hi pairs) + (lo pairs) with vpmaddwd: exact in int32.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "export/runtime/kernels_internal.h"
#include "export/runtime/kernels_kquant.h"
#include "export/runtime/kernels_tiling.h"

namespace slmc::runtime::internal {
namespace {

// Tiles keep R x TT accumulators in registers only if every loop over them is fully unrolled.
#define SLMC_UNROLL _Pragma("GCC unroll 16")

// Matrix x vector streams each weight once: prefetch into L1 this far ahead of the loads.
constexpr int64_t kPrefetchAhead = 2048;

template <int64_t kBytes>
inline void prefetch_ahead(const uint8_t* p) {
  SLMC_UNROLL
  for (int64_t o = 0; o < kBytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + o), _MM_HINT_T0);
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float f16(const uint8_t* p) { return _cvtsh_ss(load_u16(p)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// int32 lanes (4 codes each) from int16 pair sums: p_hi alone (int8 activations), or
// 256 * p_hi + p_lo (precise): |256 * 2 * 32767| stays far below 2^31.
template <bool kTwo>
inline __m256i widen(__m256i p_hi, __m256i p_lo) {
  if constexpr (!kTwo) return _mm256_madd_epi16(p_hi, _mm256_set1_epi16(1));
  return _mm256_add_epi32(_mm256_madd_epi16(p_hi, _mm256_set1_epi16(256)),
                          _mm256_madd_epi16(p_lo, _mm256_set1_epi16(1)));
}

// Runs gemm<K<true>> for precise activations (two code planes), gemm<K<false>> for int8 ones.
template <template <bool> class K>
void gemm_for(const GemmArgs& a) {
  if (a.x.lo_offset != 0) return gemm<K<true>>(a);
  gemm<K<false>>(a);
}

// ---- float formats: step = 8 values, the last partial step is done in scalar --------------

template <int kFmt>  // 0 = f32, 1 = f16, 2 = bf16
struct FloatK {
  static constexpr int64_t kStep = 8;
  static constexpr int kRowsMv = 4, kRows = 3, kTokens = 4;
  static constexpr int64_t kRowBlock = 64, kChunkSteps = 256;

  static __m256 load_w(const uint8_t* row, int64_t k) {
    if constexpr (kFmt == 0) return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k));
    if constexpr (kFmt == 1) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float scalar_w(const uint8_t* row, int64_t k) {
    if constexpr (kFmt == 0) {
      float v;
      std::memcpy(&v, row + 4 * k, 4);
      return v;
    }
    const uint16_t h = load_u16(row + 2 * k);
    if constexpr (kFmt == 1) return _cvtsh_ss(h);
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &u, 4);
    return v;
  }

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t n = a.n;
    const int64_t full_steps = n / 8;
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const float* x[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) x[j] = a.x.f32 + (t + j) * n;
    __m256 acc[R][TT];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
    const int64_t s_end = s1 < full_steps ? s1 : full_steps;
    for (int64_t s = s0; s < s_end; ++s) {
      const int64_t k = 8 * s;
      __m256 w[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        if constexpr (TT == 1) {
          if (s % 2 == 0) prefetch_ahead<kFmt == 0 ? 64 : 32>(wr[i] + (kFmt == 0 ? 4 : 2) * k);
        }
        w[i] = load_w(wr[i], k);
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m256 xv = _mm256_loadu_ps(x[j] + k);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) acc[i][j] = _mm256_fmadd_ps(w[i], xv, acc[i][j]);
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      float s = hsum(acc[i][j]);
      if (s1 > full_steps)  // the partial last step
        for (int64_t k = 8 * full_steps; k < n; ++k) s += scalar_w(wr[i], k) * x[j][k];
      out[i * TT + j] = s;
    }
  }
};

// ---- Q8_0: step = 1 block (32 weights, 34 bytes) --------------------------------------------

template <bool kTwo>
struct Q8_0K {
  static constexpr int64_t kStep = 32;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 4;
  static constexpr int64_t kRowBlock = 128, kChunkSteps = 64 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t n_lanes = a.x.n_pad / 4;
    const int64_t lo = a.x.lo_offset;
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const int8_t* xq[TT];
    const float* xs[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      xq[j] = a.x.q8 + (t + j) * a.x.q_stride;
      xs[j] = a.x.lane_scale + (t + j) * n_lanes;
    }
    __m256 acc[R][TT];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t s = s0; s < s1; ++s) {
      __m256i w[R], aw[R];
      __m256 dw[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 34 * s;
        if constexpr (TT == 1) prefetch_ahead<64>(p);
        w[i] = load256(p + 2);
        aw[i] = _mm256_sign_epi8(w[i], w[i]);
        dw[i] = _mm256_set1_ps(f16(p));
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m256i xv = load256(xq[j] + 32 * s);
        const __m256i xl = kTwo ? load256(xq[j] + lo + 32 * s) : xv;
        const __m256 sc = _mm256_loadu_ps(xs[j] + 8 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m256i p_hi = _mm256_maddubs_epi16(aw[i], _mm256_sign_epi8(xv, w[i]));
          const __m256i p_lo =
              kTwo ? _mm256_maddubs_epi16(aw[i], _mm256_sign_epi8(xl, w[i])) : p_hi;
          const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(widen<kTwo>(p_hi, p_lo)), sc);
          acc[i][j] = _mm256_fmadd_ps(f, dw[i], acc[i][j]);
        }
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) out[i * TT + j] = hsum(acc[i][j]);
  }
};

// ---- Q4_0: step = 2 blocks (64 weights, 36 bytes) -------------------------------------------

template <bool kTwo>
struct Q4_0K {
  static constexpr int64_t kStep = 64;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 3;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 64 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t nb = a.n / 32;
    const int64_t n_lanes = a.x.n_pad / 8;
    const int64_t xlo = a.x.lo_offset;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i d_idx = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const int8_t* xq[TT];
    const int32_t* xi[TT];
    const float* xs[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      xq[j] = a.x.q8 + (t + j) * a.x.q_stride;
      xi[j] = a.x.lane_init + (t + j) * n_lanes;
      xs[j] = a.x.lane_scale + (t + j) * n_lanes;
    }
    __m256 acc[R][TT];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t s = s0; s < s1; ++s) {
      __m256i lo[R], hi[R];
      __m256 dw[R];
      const bool full = nb - 2 * s >= 2;
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 36 * s;
        if constexpr (TT == 1) prefetch_ahead<64>(p);
        const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
        const __m128i q1 =
            full ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 20)) : _mm_setzero_si128();
        const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
        lo[i] = _mm256_and_si256(q, m4);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        const uint32_t dd =
            load_u16(p) | (full ? static_cast<uint32_t>(load_u16(p + 18)) << 16 : 0u);
        const __m128 d2 = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd)));
        dw[i] = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d2), d_idx);
      }
      // Step s covers blocks 2s, 2s + 1: quad s / 2, half s % 2 of the quad's 64-byte halves.
      const int64_t off = 128 * (s / 2) + 32 * (s % 2);
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m256i xl = load256(xq[j] + off);
        const __m256i xh = load256(xq[j] + off + 64);
        const __m256i xl2 = kTwo ? load256(xq[j] + xlo + off) : xl;
        const __m256i xh2 = kTwo ? load256(xq[j] + xlo + off + 64) : xh;
        const __m256i init = load256(xi[j] + 8 * s);
        const __m256 sc = _mm256_loadu_ps(xs[j] + 8 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m256i p_hi =
              _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xl), _mm256_maddubs_epi16(hi[i], xh));
          const __m256i p_lo = kTwo ? _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xl2),
                                                       _mm256_maddubs_epi16(hi[i], xh2))
                                    : p_hi;
          const __m256i d = _mm256_add_epi32(widen<kTwo>(p_hi, p_lo), init);
          const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(d), sc);
          acc[i][j] = _mm256_fmadd_ps(f, dw[i], acc[i][j]);
        }
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) out[i * TT + j] = hsum(acc[i][j]);
  }
};

// ---- Q4_G64: step = 1 group (64 weights, 36 bytes) ------------------------------------------

template <bool kTwo>
struct Q4G64K {
  static constexpr int64_t kStep = 64;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 3;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 64 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t n_lanes = a.x.n_pad / 8;
    const int64_t xlo = a.x.lo_offset;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const int8_t* xq[TT];
    const float* xs[TT];
    const float* xb[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      xq[j] = a.x.q8 + (t + j) * a.x.q_stride;
      xs[j] = a.x.lane_scale + (t + j) * n_lanes;
      xb[j] = a.x.lane_sums + (t + j) * n_lanes;
    }
    __m256 acc[R][TT];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t s = s0; s < s1; ++s) {
      __m256i lo[R], hi[R];
      __m256 dw[R], dz[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 36 * s;
        if constexpr (TT == 1) prefetch_ahead<64>(p);
        const __m256i q = load256(p + 4);
        lo[i] = _mm256_and_si256(q, m4);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        const float d = f16(p);
        dw[i] = _mm256_set1_ps(d);
        dz[i] = _mm256_set1_ps(d * f16(p + 2));
      }
      // Group s is group s % 2 of pair s / 2 (Layout::kQ4_G64).
      const int64_t off = 128 * (s / 2) + 32 * (s % 2);
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m256i xl = load256(xq[j] + off);
        const __m256i xh = load256(xq[j] + off + 64);
        const __m256i xl2 = kTwo ? load256(xq[j] + xlo + off) : xl;
        const __m256i xh2 = kTwo ? load256(xq[j] + xlo + off + 64) : xh;
        const __m256 sc = _mm256_loadu_ps(xs[j] + 8 * s);
        const __m256 bs = _mm256_loadu_ps(xb[j] + 8 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m256i p_hi =
              _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xl), _mm256_maddubs_epi16(hi[i], xh));
          const __m256i p_lo = kTwo ? _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xl2),
                                                       _mm256_maddubs_epi16(hi[i], xh2))
                                    : p_hi;
          const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(widen<kTwo>(p_hi, p_lo)), sc);
          acc[i][j] = _mm256_fmadd_ps(f, dw[i], acc[i][j]);
          acc[i][j] = _mm256_fnmadd_ps(bs, dz[i], acc[i][j]);
        }
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) out[i * TT + j] = hsum(acc[i][j]);
  }
};

// ---- Q4_G128: step = 1 group (128 weights, 68 bytes) ----------------------------------------

template <bool kTwo>
struct Q4G128K {
  static constexpr int64_t kStep = 128;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 2;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 32 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t ng_pad = a.x.n_pad / 128;
    const int64_t xlo = a.x.lo_offset;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const int8_t* xq[TT];
    const float* xs[TT];
    const float* xb[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      xq[j] = a.x.q8 + (t + j) * a.x.q_stride;
      xs[j] = a.x.scale + (t + j) * ng_pad;
      xb[j] = a.x.block_sums + (t + j) * ng_pad;
    }
    __m256 acc[R][TT];
    float corr[R][TT] = {};
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t s = s0; s < s1; ++s) {
      __m256i q[R][4];  // codes of weights 0..31, 32..63, 64..95, 96..127
      float dw[R], dz[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 68 * s;
        if constexpr (TT == 1) prefetch_ahead<128>(p);
        const __m256i r0 = load256(p + 4), r1 = load256(p + 36);
        q[i][0] = _mm256_and_si256(r0, m4);
        q[i][1] = _mm256_and_si256(r1, m4);
        q[i][2] = _mm256_and_si256(_mm256_srli_epi16(r0, 4), m4);
        q[i][3] = _mm256_and_si256(_mm256_srli_epi16(r1, 4), m4);
        dw[i] = f16(p);
        dz[i] = dw[i] * f16(p + 2);
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const int8_t* xg = xq[j] + 128 * s;
        const float da = xs[j][s], bs = xb[j][s];
        // 4 products of at most 15 * 127 per int16 lane pair sum: no saturation.
        auto products = [&](const int8_t* x, int i) {
          return _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(q[i][0], load256(x)),
                                                   _mm256_maddubs_epi16(q[i][1], load256(x + 32))),
                                  _mm256_add_epi16(_mm256_maddubs_epi16(q[i][2], load256(x + 64)),
                                                   _mm256_maddubs_epi16(q[i][3], load256(x + 96))));
        };
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m256i p_hi = products(xg, i);
          const __m256i p_lo = kTwo ? products(xg + xlo, i) : p_hi;
          const __m256 f = _mm256_cvtepi32_ps(widen<kTwo>(p_hi, p_lo));
          acc[i][j] = _mm256_fmadd_ps(f, _mm256_set1_ps(dw[i] * da), acc[i][j]);
          corr[i][j] += dz[i] * bs;
        }
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) out[i * TT + j] = hsum(acc[i][j]) - corr[i][j];
  }
};

// ---- packed Q4_0 / Q8_0: step = a group of 16 blocks, done as two halves of 8 ----------------

template <bool kNibbles, bool kTwo>  // kNibbles: Q4_0, else Q8_0; kTwo: precise activations
struct PackedK {
  static constexpr int64_t kStep = 512;
  static constexpr int kRowsMv = 1, kRows = 1, kTokens = 2;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 8 / (kTwo ? 2 : 1);
  static constexpr int64_t kBlockBytes = kNibbles ? 18 : 34;
  static constexpr int kChunks = kNibbles ? 4 : 8;

  // Group s of a row as a full group: the short last group is copied into `pad` first.
  static inline const uint8_t* full_group(const uint8_t* row, int64_t nb, int64_t s, uint8_t* pad) {
    const uint8_t* p = row + s * 16 * kBlockBytes;
    const int64_t m = nb - 16 * s;
    if (m >= 16) return p;
    std::memset(pad, 0, 16 * kBlockBytes);
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(pad + 2 * i, p + 2 * i, 2);
      SLMC_UNROLL
      for (int k = 0; k < kChunks; ++k)
        std::memcpy(pad + 32 + 64 * k + 4 * i, p + 2 * m + 4 * m * k + 4 * i, 4);
    }
    return pad;
  }

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t nb = a.n / 32;
    const int64_t n_lanes = a.x.n_pad / 32;
    const int64_t lo = a.x.lo_offset;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    alignas(32) uint8_t pad[R][16 * kBlockBytes];
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const int8_t* xq[TT];
    const int32_t* xi[TT];
    const float* xs[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      xq[j] = a.x.q8 + (t + j) * a.x.q_stride;
      xi[j] = a.x.lane_init + (t + j) * n_lanes;
      xs[j] = a.x.lane_scale + (t + j) * n_lanes;
    }
    __m256 acc[R][TT];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t s = s0; s < s1; ++s) {
      const uint8_t* g[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        if constexpr (TT == 1) prefetch_ahead<16 * kBlockBytes>(wr[i] + s * 16 * kBlockBytes);
        g[i] = full_group(wr[i], nb, s, pad[i]);
      }
      SLMC_UNROLL
      for (int h = 0; h < 2; ++h) {  // blocks 8h .. 8h + 7 of the group
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m256 dw =
              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g[i] + 16 * h)));
          __m256i q[8];  // q[j] meets activation vector j
          SLMC_UNROLL
          for (int k = 0; k < kChunks; ++k) {
            const __m256i raw = load256(g[i] + 32 + 64 * k + 32 * h);
            if constexpr (kNibbles) {
              q[k] = _mm256_and_si256(raw, m4);
              q[4 + k] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            } else {
              q[k] = raw;
            }
          }
          SLMC_UNROLL
          for (int j = 0; j < TT; ++j) {
            const int8_t* xg = xq[j] + 512 * s + 32 * h;
            // lane_init removes Q4_0's offset 8; for Q8_0 it undoes the AVX-512 kernel's xor 0x80,
            // which the sign trick here does not need.
            __m256i d = kNibbles ? load256(xi[j] + 16 * s + 8 * h) : _mm256_setzero_si256();
            if constexpr (kNibbles) {  // 8 products of at most 15 * 127 per int16: no overflow
              auto products = [&](const int8_t* x) {
                __m256i p16 = _mm256_maddubs_epi16(q[0], load256(x));
                SLMC_UNROLL
                for (int k = 1; k < 8; ++k)
                  p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(q[k], load256(x + 64 * k)));
                return p16;
              };
              const __m256i p_hi = products(xg);
              d = _mm256_add_epi32(d, widen<kTwo>(p_hi, kTwo ? products(xg + lo) : p_hi));
            } else {  // |w| * sign(w) a: 2 * 127 * 127 per int16, widened at once
              SLMC_UNROLL
              for (int k = 0; k < 8; ++k) {
                const __m256i aw = _mm256_sign_epi8(q[k], q[k]);
                const int8_t* xk = xg + 64 * k;
                const __m256i p_hi = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(load256(xk), q[k]));
                const __m256i p_lo =
                    kTwo ? _mm256_maddubs_epi16(aw, _mm256_sign_epi8(load256(xk + lo), q[k]))
                         : p_hi;
                d = _mm256_add_epi32(d, widen<kTwo>(p_hi, p_lo));
              }
            }
            const __m256 sc = _mm256_loadu_ps(xs[j] + 16 * s + 8 * h);
            acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(dw, sc), acc[i][j]);
          }
        }
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) out[i * TT + j] = hsum(acc[i][j]);
  }
};

// ---- activation quantizer (bit-identical to the scalar one) ----------------------------------

// Packs 32 int32 codes in [-127, 127] to bytes in element order.
inline __m256i pack_codes(const __m256i (&c)[4]) {
  // packs interleave 128-bit lanes; the permute restores element order.
  const __m256i p16a = _mm256_packs_epi32(c[0], c[1]), p16b = _mm256_packs_epi32(c[2], c[3]);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize(const float* x, int64_t n, int64_t block, int8_t* q, int8_t* q_lo, float* d,
              int32_t* sums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lim = _mm256_set1_epi32(127), neg_lim = _mm256_set1_epi32(-127);
  for (int64_t b = 0; b < n / block; ++b, x += block, q += block) {
    __m256 amax = _mm256_setzero_ps();
    for (int64_t j = 0; j < block; j += 8)
      amax = _mm256_max_ps(amax, _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float db = _mm_cvtss_f32(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(db != 0.0f ? 1.0f / db : 0.0f);
    __m256i s = _mm256_setzero_si256();
    for (int64_t j = 0; j < block; j += 32) {
      __m256i c[4], l[4];
      SLMC_UNROLL
      for (int k = 0; k < 4; ++k) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), id);
        // t must be rounded to fp32 as in the scalar path: keep the compiler from fusing the
        // multiply into the subtraction below (an FMA would skip that rounding).
        __asm__("" : "+x"(t));
        c[k] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(t), lim), neg_lim);
        if (q_lo != nullptr) {
          const __m256 r =
              _mm256_mul_ps(_mm256_sub_ps(t, _mm256_cvtepi32_ps(c[k])), _mm256_set1_ps(256));
          l[k] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(r), lim), neg_lim);
          s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_slli_epi32(c[k], 8), l[k]));
        } else {
          s = _mm256_add_epi32(s, c[k]);
        }
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + j), pack_codes(c));
      if (q_lo != nullptr) _mm256_storeu_si256(reinterpret_cast<__m256i*>(q_lo + j), pack_codes(l));
    }
    d[b] = q_lo != nullptr ? db * (1.0f / 256.0f) : db;
    sums[b] = hsum_i32(s);
    if (q_lo != nullptr) q_lo += block;
  }
}

void sum4(const int8_t* q, int64_t n, int32_t* out) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < n; i += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i / 4),
                        _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load256(q + i)), ones16));
}

void f32_gemm(const GemmArgs& a) { gemm<FloatK<0>>(a); }
void f16_gemm(const GemmArgs& a) { gemm<FloatK<1>>(a); }
void bf16_gemm(const GemmArgs& a) { gemm<FloatK<2>>(a); }
void q8_0_gemm(const GemmArgs& a) { gemm_for<Q8_0K>(a); }
void q4_0_gemm(const GemmArgs& a) { gemm_for<Q4_0K>(a); }
void q4_g64_gemm(const GemmArgs& a) { gemm_for<Q4G64K>(a); }
void q4_g128_gemm(const GemmArgs& a) { gemm_for<Q4G128K>(a); }
template <bool kTwo>
using PackedQ8 = PackedK<false, kTwo>;
template <bool kTwo>
using PackedQ4 = PackedK<true, kTwo>;
void q8_0_packed_gemm(const GemmArgs& a) { gemm_for<PackedQ8>(a); }
void q4_0_packed_gemm(const GemmArgs& a) { gemm_for<PackedQ4>(a); }

void kquant_gemm_avx2(const GemmArgs& a) {
  kquant_gemm(a, [](const float* w, const float* x) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    for (int k = 0; k < 256; k += 32) {
      s0 = _mm256_fmadd_ps(_mm256_load_ps(w + k), _mm256_loadu_ps(x + k), s0);
      s1 = _mm256_fmadd_ps(_mm256_load_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), s1);
      s2 = _mm256_fmadd_ps(_mm256_load_ps(w + k + 16), _mm256_loadu_ps(x + k + 16), s2);
      s3 = _mm256_fmadd_ps(_mm256_load_ps(w + k + 24), _mm256_loadu_ps(x + k + 24), s3);
    }
    const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
  });
}

// Constant-initialized: taking its address runs no AVX2 code.
const IsaKernels kAvx2Kernels = {f32_gemm,         f16_gemm,    bf16_gemm,    q8_0_gemm,
                                 q4_0_gemm,        q4_g64_gemm, q4_g128_gemm, q8_0_packed_gemm,
                                 q4_0_packed_gemm, quantize,    sum4,         kquant_gemm_avx2};

}  // namespace

const IsaKernels* avx2_kernels() { return &kAvx2Kernels; }

}  // namespace slmc::runtime::internal
