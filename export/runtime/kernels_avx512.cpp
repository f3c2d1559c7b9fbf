// AVX-512 (F, BW, VL, VNNI) kernels. Built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni and
// called only after cpu_features.cpp saw those features and the OS's ZMM state support.
//
// Integer formats multiply unsigned weight codes by signed activation codes with vpdpbusd
// (4 products per int32 lane), then scale each lane by d_w * d_a in fp32. Precise activations
// (kTwo) have two int8 code planes: the same weight vectors meet both, and the lane's dot is
// (dot_hi << 8) + dot_lo, exact in int32 (kernels_internal.h).
//   Q4_0  codes q in [0, 15]; the -8 offset is the precomputed lane_init = -8 * sum(q_a).
//   Q8_0  codes w in [-127, 127] become w + 128 (xor 0x80); lane_init = -128 * sum(q_a) undoes it.
//   Q4_G  codes q in [0, 15]; the zero point enters as d_w * z * (d_a * sum(q_a)) per group.
// Codec-layout Q4_0 gathers the 16 nibble bytes of 4 blocks (18 bytes apart) with one vpermt2w
// and their 4 scales with one vpermw. The packed layouts need no shuffles at all.
//
// Every tile runs a branch-free loop over full steps and then at most one masked tail step, and
// fully unrolls its loops over rows and tokens so the accumulators stay in registers.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "export/runtime/kernels_internal.h"
#include "export/runtime/kernels_kquant.h"
#include "export/runtime/reduce_avx512.h"
#include "export/runtime/kernels_tiling.h"

namespace slmc::runtime::internal {
namespace {

#define SLMC_UNROLL _Pragma("GCC unroll 16")
#define SLMC_INLINE __attribute__((always_inline))

template <bool B>
struct Full {
  static constexpr bool value = B;
};

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float f16(const uint8_t* p) { return _cvtsh_ss(load_u16(p)); }

inline __mmask64 byte_mask(int64_t n) { return n >= 64 ? ~0ull : ((1ull << n) - 1); }

// Matrix x vector streams each weight once: prefetch into L1 this far ahead of the loads (about
// one 4096-column row of Q4_0), which measured ~10-15% above the hardware prefetchers alone.
constexpr int64_t kPrefetchAhead = 2048;

// Prefetches the lines of [p, p + bytes) + kPrefetchAhead (prefetches never fault).
template <int64_t kBytes>
SLMC_INLINE inline void prefetch_ahead(const uint8_t* p) {
  SLMC_UNROLL
  for (int64_t o = 0; o < kBytes; o += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + o), _MM_HINT_T0);
}

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Pointers to the activations of tokens t .. t + TT - 1; the q_lo plane is at q[j] + lo.
template <int TT>
struct TokenPtrs {
  const int8_t* q[TT];
  const int32_t* init[TT];
  const float* scale[TT];
  const float* sums[TT];
  int64_t lo;
  TokenPtrs(const ActView& x, int64_t t, int64_t n_lanes) : lo(x.lo_offset) {
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) {
      q[j] = x.q8 + (t + j) * x.q_stride;
      init[j] = x.lane_init + (t + j) * n_lanes;
      scale[j] = x.lane_scale + (t + j) * n_lanes;
      sums[j] = x.lane_sums + (t + j) * n_lanes;
    }
  }
};

template <int R, int TT>
SLMC_INLINE inline void zero(__m512 (&acc)[R][TT]) {
  SLMC_UNROLL
  for (int i = 0; i < R; ++i) SLMC_UNROLL
  for (int j = 0; j < TT; ++j) acc[i][j] = _mm512_setzero_ps();
}

template <int R, int TT>
SLMC_INLINE inline void reduce(__m512 (&acc)[R][TT], float* out) {
  SLMC_UNROLL
  for (int i = 0; i < R; ++i) SLMC_UNROLL
  for (int j = 0; j < TT; ++j) out[i * TT + j] = _mm512_reduce_add_ps(acc[i][j]);
}

// (hi << 8) + lo: the two code planes' dots of precise activations, exact in int32.
SLMC_INLINE inline __m512i combine(__m512i hi, __m512i lo) {
  return _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
}

// init + the lane dots of the N weight vectors w[k] with the activation vectors at x + off[k]
// (and, kTwo, with the q_lo plane at x + lo + off[k]).
template <bool kTwo, int N>
SLMC_INLINE inline __m512i dot_codes(__m512i init, const __m512i (&w)[N], const int8_t* x,
                                     const int64_t (&off)[N], int64_t lo) {
  if constexpr (!kTwo) {
    __m512i d = init;
    SLMC_UNROLL
    for (int k = 0; k < N; ++k) d = _mm512_dpbusd_epi32(d, w[k], load512(x + off[k]));
    return d;
  } else {
    __m512i h = _mm512_setzero_si512(), l = init;
    SLMC_UNROLL
    for (int k = 0; k < N; ++k) {
      h = _mm512_dpbusd_epi32(h, w[k], load512(x + off[k]));
      l = _mm512_dpbusd_epi32(l, w[k], load512(x + lo + off[k]));
    }
    return combine(h, l);
  }
}

// Runs gemm<K<true>> for precise activations (two code planes), gemm<K<false>> for int8 ones.
template <template <bool> class K>
void gemm_for(const GemmArgs& a) {
  if (a.x.lo_offset != 0) return gemm<K<true>>(a);
  gemm<K<false>>(a);
}

// ---- float formats: step = 16 values --------------------------------------------------------

template <int kFmt>  // 0 = f32, 1 = f16, 2 = bf16
struct FloatK {
  static constexpr int64_t kStep = 16;
  static constexpr int kRowsMv = 4, kRows = 4, kTokens = 4;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 64;

  template <bool kFull>
  static SLMC_INLINE inline __m512 load_w(const uint8_t* row, int64_t k, __mmask16 m) {
    if constexpr (kFmt == 0) {
      const float* p = reinterpret_cast<const float*>(row) + k;
      return kFull ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
    } else {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + k;
      const __m256i h = kFull ? load256(p) : _mm256_maskz_loadu_epi16(m, p);
      if constexpr (kFmt == 1) return _mm512_cvtph_ps(h);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t n = a.n;
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const float* x[TT];
    SLMC_UNROLL
    for (int j = 0; j < TT; ++j) x[j] = a.x.f32 + (t + j) * n;
    __m512 acc[R][TT];
    zero(acc);
    auto step = [&](auto full, int64_t s) SLMC_INLINE {
      constexpr bool kFull = decltype(full)::value;
      const int64_t k = 16 * s;
      const __mmask16 m = kFull ? 0xffff : static_cast<__mmask16>((1u << (n - k)) - 1);
      __m512 w[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        if constexpr (TT == 1) prefetch_ahead<kFmt == 0 ? 64 : 32>(wr[i] + (kFmt == 0 ? 4 : 2) * k);
        w[i] = load_w<kFull>(wr[i], k, m);
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m512 xv = kFull ? _mm512_loadu_ps(x[j] + k) : _mm512_maskz_loadu_ps(m, x[j] + k);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) acc[i][j] = _mm512_fmadd_ps(w[i], xv, acc[i][j]);
      }
    };
    const int64_t s_full = s1 < n / 16 ? s1 : n / 16;
    int64_t s = s0;
    for (; s < s_full; ++s) step(Full<true>{}, s);
    for (; s < s1; ++s) step(Full<false>{}, s);
    reduce(acc, out);
  }
};

// ---- Q8_0, codec layout: step = 2 blocks (64 weights, 68 bytes) -----------------------------

template <bool kTwo>
struct Q8_0K {
  static constexpr int64_t kStep = 64;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 4;
  static constexpr int64_t kRowBlock = 128, kChunkSteps = 32 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t nb = a.n / 32;
    // words 0..7 <- d of block 0 (word 0), words 8..15 <- d of block 1 (byte 34 = word 17)
    const __m512i d_idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 17,
                                           17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const TokenPtrs<TT> x(a.x, t, a.x.n_pad / 4);
    __m512 acc[R][TT];
    zero(acc);
    auto step = [&](auto full, int64_t s) SLMC_INLINE {
      constexpr bool kFull = decltype(full)::value;
      __m512i wq[R];
      __m512 dw[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 68 * s;
        if constexpr (TT == 1) prefetch_ahead<128>(p);
        __m512i hd, q;
        if constexpr (kFull) {
          hd = load512(p);
          q = _mm512_inserti64x4(_mm512_castsi256_si512(load256(p + 2)), load256(p + 36), 1);
        } else {  // one block left
          hd = _mm512_maskz_loadu_epi8(byte_mask(34), p);
          q = _mm512_maskz_loadu_epi8(byte_mask(32), p + 2);
        }
        dw[i] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(d_idx, hd)));
        wq[i] = _mm512_xor_si512(q, bias);
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m512i init = load512(x.init[j] + 16 * s);
        const __m512 sc = _mm512_loadu_ps(x.scale[j] + 16 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m512i d = dot_codes<kTwo, 1>(init, {wq[i]}, x.q[j], {64 * s}, x.lo);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw[i], sc), acc[i][j]);
        }
      }
    };
    const int64_t s_full = s1 < nb / 2 ? s1 : nb / 2;
    int64_t s = s0;
    for (; s < s_full; ++s) step(Full<true>{}, s);
    for (; s < s1; ++s) step(Full<false>{}, s);
    reduce(acc, out);
  }
};

// ---- Q4_0, codec layout: step = 4 blocks (128 weights, 72 bytes) ----------------------------

template <bool kTwo>
struct Q4_0K {
  static constexpr int64_t kStep = 128;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 4;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 32 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t nb = a.n / 32;
    // Output word k = 8b + j takes nibble word j of block b: source word 9b + 1 + j (words >= 32
    // come from the second table, bytes 64..71 of the step).
    const __m512i nib_idx =
        _mm512_set_epi16(35, 34, 33, 32, 31, 30, 29, 28, 26, 25, 24, 23, 22, 21, 20, 19, 17, 16, 15,
                         14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1);
    // Output word k < 16 takes the scale of block k / 4: source word 9 * (k / 4).
    const __m512i d_idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 27,
                                           27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const TokenPtrs<TT> x(a.x, t, a.x.n_pad / 8);
    __m512 acc[R][TT];
    zero(acc);
    auto step = [&](auto full, int64_t s) SLMC_INLINE {
      constexpr bool kFull = decltype(full)::value;
      __m512i lo[R], hi[R];
      __m512 dw[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 72 * s;
        if constexpr (TT == 1) prefetch_ahead<128>(p);
        __m512i A, B;
        if constexpr (kFull) {
          A = load512(p);
          B = _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 64)));
        } else {  // 1..3 blocks left
          A = _mm512_maskz_loadu_epi8(byte_mask(18 * (nb - 4 * s)), p);
          B = _mm512_setzero_si512();
        }
        const __m512i nib = _mm512_permutex2var_epi16(A, nib_idx, B);
        lo[i] = _mm512_and_si512(nib, m4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(nib, 4), m4);
        dw[i] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(d_idx, A)));
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m512i init = load512(x.init[j] + 16 * s);
        const __m512 sc = _mm512_loadu_ps(x.scale[j] + 16 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m512i d =
              dot_codes<kTwo, 2>(init, {lo[i], hi[i]}, x.q[j], {128 * s, 128 * s + 64}, x.lo);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw[i], sc), acc[i][j]);
        }
      }
    };
    const int64_t s_full = s1 < nb / 4 ? s1 : nb / 4;
    int64_t s = s0;
    for (; s < s_full; ++s) step(Full<true>{}, s);
    for (; s < s1; ++s) step(Full<false>{}, s);
    reduce(acc, out);
  }
};

// ---- Q4_G64: step = 2 groups (128 weights, 72 bytes) ----------------------------------------

template <bool kTwo>
struct Q4G64K {
  static constexpr int64_t kStep = 128;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 4;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 32 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t ng = a.n / 64;
    // words 0..7: d of group A (word 0); 8..15: d of B (word 18); 16..23: z of A (word 1);
    // 24..31: z of B (word 19).
    const __m512i dz_idx = _mm512_set_epi16(19, 19, 19, 19, 19, 19, 19, 19, 1, 1, 1, 1, 1, 1, 1, 1,
                                            18, 18, 18, 18, 18, 18, 18, 18, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const TokenPtrs<TT> x(a.x, t, a.x.n_pad / 8);
    __m512 acc[R][TT];
    zero(acc);
    auto step = [&](auto full, int64_t s) SLMC_INLINE {
      constexpr bool kFull = decltype(full)::value;
      __m512i lo[R], hi[R];
      __m512 dw[R], dz[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 72 * s;
        if constexpr (TT == 1) prefetch_ahead<128>(p);
        __m512i hd, q;
        if constexpr (kFull) {
          hd = load512(p);
          q = _mm512_inserti64x4(_mm512_castsi256_si512(load256(p + 4)), load256(p + 40), 1);
        } else {  // one group left
          hd = _mm512_maskz_loadu_epi8(byte_mask(36), p);
          q = _mm512_zextsi256_si512(load256(p + 4));
        }
        lo[i] = _mm512_and_si512(q, m4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        const __m512i dz16 = _mm512_permutexvar_epi16(dz_idx, hd);
        dw[i] = _mm512_cvtph_ps(_mm512_castsi512_si256(dz16));
        dz[i] = _mm512_mul_ps(dw[i], _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dz16, 1)));
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m512 sc = _mm512_loadu_ps(x.scale[j] + 16 * s);
        const __m512 bs = _mm512_loadu_ps(x.sums[j] + 16 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m512i d = dot_codes<kTwo, 2>(_mm512_setzero_si512(), {lo[i], hi[i]}, x.q[j],
                                               {128 * s, 128 * s + 64}, x.lo);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw[i], sc), acc[i][j]);
          acc[i][j] = _mm512_fnmadd_ps(bs, dz[i], acc[i][j]);
        }
      }
    };
    const int64_t s_full = s1 < ng / 2 ? s1 : ng / 2;
    int64_t s = s0;
    for (; s < s_full; ++s) step(Full<true>{}, s);
    for (; s < s1; ++s) step(Full<false>{}, s);
    reduce(acc, out);
  }
};

// ---- Q4_G128: step = 1 group (128 weights, 68 bytes) ----------------------------------------

template <bool kTwo>
struct Q4G128K {
  static constexpr int64_t kStep = 128;
  static constexpr int kRowsMv = 2, kRows = 2, kTokens = 4;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 32 / (kTwo ? 2 : 1);

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t ng_pad = a.x.n_pad / 128;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
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
    __m512 acc[R][TT];
    zero(acc);
    __m128 corr[R][TT];  // scalar zero-point terms, in lane 0
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j) corr[i][j] = _mm_setzero_ps();
    for (int64_t s = s0; s < s1; ++s) {
      __m512i lo[R], hi[R];
      __m128 dw[R], dz[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + 68 * s;
        if constexpr (TT == 1) prefetch_ahead<128>(p);
        const __m512i q = load512(p + 4);
        lo[i] = _mm512_and_si512(q, m4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        // [d, z] -> fp32 in one conversion.
        uint32_t dz_bits;
        std::memcpy(&dz_bits, p, 4);
        const __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dz_bits)));
        dw[i] = both;                                     // lane 0: d
        dz[i] = _mm_mul_ss(both, _mm_movehdup_ps(both));  // lane 0: d * z
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m128 da = _mm_load_ss(xs[j] + s), bs = _mm_load_ss(xb[j] + s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m512i d = dot_codes<kTwo, 2>(_mm512_setzero_si512(), {lo[i], hi[i]}, xq[j],
                                               {128 * s, 128 * s + 64}, a.x.lo_offset);
          const __m512 scale = _mm512_broadcastss_ps(_mm_mul_ss(dw[i], da));
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, acc[i][j]);
          corr[i][j] = _mm_fmadd_ss(dz[i], bs, corr[i][j]);
        }
      }
    }
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) SLMC_UNROLL
    for (int j = 0; j < TT; ++j)
      out[i * TT + j] = _mm512_reduce_add_ps(acc[i][j]) - _mm_cvtss_f32(corr[i][j]);
  }
};

// ---- packed Q4_0 / Q8_0: step = a group of 16 blocks (512 weights) ---------------------------
// One vector load per 4-byte chunk of 16 blocks' codes and one for their 16 scales; int32 lane i
// of every dot product is block i, so the per-block scaling is one convert + multiply + FMA per
// 16 blocks (Layout::kPacked16 on the activation side).

// Integer dot of one packed group's weight vectors q with a token's codes at xg (the q_lo plane
// at xg + lo when kTwo), seeded with init. Two dependency chains of four per plane (vpdpbusd
// latency is 5 cycles): vectors 0..3 and 4..7, which for Q4_0 are the low and the high nibbles.
// kHi16: q[4..7] hold 16 * code (high nibbles left in place); their dots are divided by 16,
// exactly (srai 4 of a multiple of 16).
template <bool kTwo, bool kHi16>
SLMC_INLINE inline __m512i group_dot(const __m512i (&q)[8], const int8_t* xg, int64_t lo,
                                     __m512i init) {
  auto plane = [&](const int8_t* x, __m512i seed) SLMC_INLINE {
    __m512i d0 = _mm512_dpbusd_epi32(seed, q[0], load512(x));
    __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[4], load512(x + 256));
    SLMC_UNROLL
    for (int k = 1; k < 4; ++k) {
      d0 = _mm512_dpbusd_epi32(d0, q[k], load512(x + 64 * k));
      d1 = _mm512_dpbusd_epi32(d1, q[4 + k], load512(x + 256 + 64 * k));
    }
    if constexpr (kHi16) d1 = _mm512_srai_epi32(d1, 4);
    return _mm512_add_epi32(d0, d1);
  };
  if constexpr (!kTwo) {
    return plane(xg, init);
  } else if constexpr (kHi16) {
    const __m512i h = plane(xg, _mm512_setzero_si512());
    return combine(h, plane(xg + lo, init));
  } else {
    // One chain per plane: the 8 loads of a plane share the weight vectors with the other plane.
    __m512i h = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], load512(xg));
    __m512i l = _mm512_dpbusd_epi32(init, q[0], load512(xg + lo));
    SLMC_UNROLL
    for (int k = 1; k < 8; ++k) {
      h = _mm512_dpbusd_epi32(h, q[k], load512(xg + 64 * k));
      l = _mm512_dpbusd_epi32(l, q[k], load512(xg + lo + 64 * k));
    }
    return combine(h, l);
  }
}

template <bool kNibbles, bool kTwo>  // kNibbles: Q4_0, else Q8_0; kTwo: precise activations
struct PackedK {
  static constexpr int64_t kStep = 512;
  static constexpr int kRowsMv = 1, kRows = 1, kTokens = 8;
  static constexpr int64_t kRowBlock = 256, kChunkSteps = 8 / (kTwo ? 2 : 1);
  static constexpr int64_t kBlockBytes = kNibbles ? 18 : 34;
  static constexpr int kChunks = kNibbles ? 4 : 8;

  // Group s of a row: q[j] meets activation vector j of the group; dw = the 16 block scales.
  // A short last group holds m < 16 blocks: m scales, then chunks of 4m bytes.
  // kHi16 (Q4_0): the high nibbles stay in place (q[4 + k] = 16 * code), which saves a shift
  // per vector; the dot product of those vectors must then be divided by 16 (exactly, srai 4).
  template <bool kFull, bool kHi16>
  static SLMC_INLINE inline void load_group(const uint8_t* p, int64_t m, __m512i (&q)[8],
                                            __m512& dw) {
    __m512i raw[kChunks];
    if constexpr (kFull) {
      dw = _mm512_cvtph_ps(load256(p));
      SLMC_UNROLL
      for (int k = 0; k < kChunks; ++k) raw[k] = load512(p + 32 + 64 * k);
    } else {
      dw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << m) - 1), p));
      const __mmask64 mb = byte_mask(4 * m);
      SLMC_UNROLL
      for (int k = 0; k < kChunks; ++k) raw[k] = _mm512_maskz_loadu_epi8(mb, p + 2 * m + 4 * m * k);
    }
    if constexpr (kNibbles) {
      const __m512i m4 = _mm512_set1_epi8(0x0f);
      SLMC_UNROLL
      for (int k = 0; k < 4; ++k) {
        q[k] = _mm512_and_si512(raw[k], m4);
        q[4 + k] = kHi16 ? _mm512_andnot_si512(m4, raw[k])
                         : _mm512_and_si512(_mm512_srli_epi16(raw[k], 4), m4);
      }
    } else {
      const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
      SLMC_UNROLL
      for (int k = 0; k < 8; ++k) q[k] = _mm512_xor_si512(raw[k], bias);
    }
  }

  template <int R, int TT>
  static void tile(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1, float* out) {
    const int64_t nb = a.n / 32;
    const uint8_t* wr[R];
    SLMC_UNROLL
    for (int i = 0; i < R; ++i) wr[i] = a.w + static_cast<size_t>(r + i) * a.row_bytes;
    const TokenPtrs<TT> x(a.x, t, a.x.n_pad / 32);
    __m512 acc[R][TT];
    zero(acc);
    // Decode (TT = 1) has no tokens to amortize unpacking over: keep Q4_0's high nibbles in place.
    constexpr bool kHi16 = kNibbles && TT == 1;
    auto step = [&](auto full, int64_t s) SLMC_INLINE {
      constexpr bool kFull = decltype(full)::value;
      __m512i q[R][8];
      __m512 dw[R];
      SLMC_UNROLL
      for (int i = 0; i < R; ++i) {
        const uint8_t* p = wr[i] + s * 16 * kBlockBytes;
        if constexpr (TT == 1) {
          prefetch_ahead<16 * kBlockBytes>(p);
        } else if constexpr (kTwo) {
          // The halved chunks read rows in pieces, which the hardware prefetchers follow poorly;
          // the next row tile reads this group of the row R below: fetch it now. Measured on
          // 4096 x 4096 (1 thread): T = 8 1.2x (Q4_0) and 1.7x (Q8_0), T = 128 1.0-1.07x;
          // neutral for int8 (whole-row chunks at 4096 columns), so left out there.
          SLMC_UNROLL
          for (int64_t o = 0; o < 16 * kBlockBytes; o += 64)
            _mm_prefetch(reinterpret_cast<const char*>(p + R * a.row_bytes + o), _MM_HINT_T0);
        }
        load_group<kFull, kHi16>(p, nb - 16 * s, q[i], dw[i]);
      }
      SLMC_UNROLL
      for (int j = 0; j < TT; ++j) {
        const __m512i init = load512(x.init[j] + 16 * s);
        const __m512 sc = _mm512_loadu_ps(x.scale[j] + 16 * s);
        SLMC_UNROLL
        for (int i = 0; i < R; ++i) {
          const __m512i d = group_dot<kTwo, kHi16>(q[i], x.q[j] + 512 * s, x.lo, init);
          acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw[i], sc), acc[i][j]);
        }
      }
    };
    const int64_t s_full = s1 < nb / 16 ? s1 : nb / 16;
    int64_t s = s0;
    for (; s < s_full; ++s) step(Full<true>{}, s);
    for (; s < s1; ++s) step(Full<false>{}, s);
    reduce(acc, out);
  }
};

// ---- activation quantizer (bit-identical to the scalar one) ----------------------------------
// 16 blocks at a time: per-block partial maxima and code sums are reduced with a transposed
// reduction (lane i of the result = block i), so the scales of 16 blocks take one division.

// v[i] (16 vectors) -> one vector whose lane i is op over the 16 lanes of v[i].
template <typename Op>
SLMC_INLINE inline __m512 transpose_reduce(__m512 (&v)[16], Op op) {
  __m512 w[8], u[4], y[2];
  SLMC_UNROLL
  for (int p = 0; p < 8; ++p)  // 128-bit lanes 0-1: v[2p], 2-3: v[2p + 1]
    w[p] = op(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  SLMC_UNROLL
  for (int p = 0; p < 4; ++p)  // 128-bit lane k: v[4p + k]
    u[p] = op(_mm512_shuffle_f32x4(w[2 * p], w[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_f32x4(w[2 * p], w[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  SLMC_UNROLL
  for (int p = 0; p < 2; ++p)  // lane k: v[8p + k] (2 floats), v[8p + 4 + k] (2 floats)
    y[p] = op(_mm512_castpd_ps(
                  _mm512_unpacklo_pd(_mm512_castps_pd(u[2 * p]), _mm512_castps_pd(u[2 * p + 1]))),
              _mm512_castpd_ps(
                  _mm512_unpackhi_pd(_mm512_castps_pd(u[2 * p]), _mm512_castps_pd(u[2 * p + 1]))));
  // Element 4k + m of z is block 4m + k; put block i in element i.
  const __m512 z = op(_mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(order, z);
}

// One block's codes: writes `block` int8 codes q (and, if q_lo, the residual codes) and returns
// the per-lane sums of the combined codes c (QuantizeFn).
SLMC_INLINE inline __m512i quantize_block(const float* x, int64_t block, __m512 id, int8_t* q,
                                          int8_t* q_lo) {
  const __m512i lim = _mm512_set1_epi32(127), neg_lim = _mm512_set1_epi32(-127);
  __m512i s = _mm512_setzero_si512();
  for (int64_t j = 0; j < block; j += 16) {
    __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x + j), id);
    // t must be rounded to fp32 as in the scalar path: keep the compiler from fusing the
    // multiply into the subtraction below (an FMA would skip that rounding).
    __asm__("" : "+v"(t));
    __m512i c = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(t), lim), neg_lim);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), _mm512_cvtepi32_epi8(c));
    if (q_lo != nullptr) {
      const __m512 r = _mm512_mul_ps(_mm512_sub_ps(t, _mm512_cvtepi32_ps(c)), _mm512_set1_ps(256));
      const __m512i l = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(r), lim), neg_lim);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q_lo + j), _mm512_cvtepi32_epi8(l));
      c = _mm512_add_epi32(_mm512_slli_epi32(c, 8), l);
    }
    s = _mm512_add_epi32(s, c);
  }
  return s;
}

SLMC_INLINE inline __m512 block_absmax(const float* x, int64_t block) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  __m512 m = _mm512_setzero_ps();
  for (int64_t j = 0; j < block; j += 16)
    m = _mm512_max_ps(m, _mm512_castsi512_ps(_mm512_and_si512(
                             _mm512_castps_si512(_mm512_loadu_ps(x + j)), abs_mask)));
  return m;
}

void quantize(const float* x, int64_t n, int64_t block, int8_t* q, int8_t* q_lo, float* d,
              int32_t* sums) {
  const int64_t nb = n / block;
  // Precise codes have scale d1 / 256 (exact: a power of two).
  const __m512 to_d = _mm512_set1_ps(q_lo != nullptr ? 1.0f / 256.0f : 1.0f);
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16, x += 16 * block, q += 16 * block) {
    __m512 m[16];
    SLMC_UNROLL
    for (int i = 0; i < 16; ++i) m[i] = block_absmax(x + i * block, block);
    const __m512 amax = transpose_reduce(m, [](__m512 a, __m512 c) { return _mm512_max_ps(a, c); });
    // Same fp32 operations as the scalar path: d = amax / 127, id = d ? 1 / d : 0.
    const __m512 dv = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(dv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    alignas(64) float ids[16];
    _mm512_store_ps(ids, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), dv));
    _mm512_storeu_ps(d + b, _mm512_mul_ps(dv, to_d));
    __m512 s[16];
    SLMC_UNROLL
    for (int i = 0; i < 16; ++i)
      s[i] = _mm512_castsi512_ps(quantize_block(x + i * block, block, _mm512_set1_ps(ids[i]),
                                                q + i * block,
                                                q_lo ? q_lo + (b + i) * block : nullptr));
    const __m512 total = transpose_reduce(s, [](__m512 a, __m512 c) {
      return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(c)));
    });
    _mm512_storeu_si512(sums + b, _mm512_castps_si512(total));
  }
  for (; b < nb; ++b, x += block, q += block) {  // fewer than 16 blocks left
    const float db = _mm512_reduce_max_ps(block_absmax(x, block)) / 127.0f;
    const __m512 id = _mm512_set1_ps(db != 0.0f ? 1.0f / db : 0.0f);
    d[b] = q_lo != nullptr ? db * (1.0f / 256.0f) : db;
    sums[b] =
        _mm512_reduce_add_epi32(quantize_block(x, block, id, q, q_lo ? q_lo + b * block : nullptr));
  }
}

void sum4(const int8_t* q, int64_t n, int32_t* out) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t i = 0; i < n; i += 64)
    _mm512_storeu_si512(out + i / 4,
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, load512(q + i)));
}

void f32_gemm(const GemmArgs& a) { gemm<FloatK<0>>(a); }
void f16_gemm(const GemmArgs& a) { gemm<FloatK<1>>(a); }
void bf16_gemm(const GemmArgs& a) { gemm<FloatK<2>>(a); }
void q8_0_gemm(const GemmArgs& a) { gemm_for<Q8_0K>(a); }
void q4_0_gemm(const GemmArgs& a) { gemm_for<Q4_0K>(a); }
void q4_g64_gemm(const GemmArgs& a) { gemm_for<Q4G64K>(a); }
void q4_g128_gemm(const GemmArgs& a) { gemm_for<Q4G128K>(a); }

// The last group of a packed row when it holds m <= 8 blocks (768 columns: 16 + 8 blocks), in
// 256-bit registers: int32 lane i is block i < 8, whose codes are the first 32 bytes of every
// 64-byte activation vector. Lanes 0-7 get exactly the operations of the 512-bit masked step
// (same integer dot, same scale products, same FMA); lanes 8-15 of acc are kept (that step adds
// 0 * 0 there). Half the integer work of the 512-bit step.
template <bool kNibbles, bool kTwo>
SLMC_INLINE inline __m512 packed_half_group(const uint8_t* p, int64_t m, const int8_t* xg,
                                            int64_t lo, const int32_t* init, const float* sc,
                                            __m512 acc) {
  constexpr int kChunks = kNibbles ? 4 : 8;
  const __m256 dw = _mm256_cvtph_ps(_mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << m) - 1), p));
  const __mmask32 mb = static_cast<__mmask32>(m >= 8 ? 0xffffffffu : (1u << (4 * m)) - 1);
  __m256i q[8];
  SLMC_UNROLL
  for (int k = 0; k < kChunks; ++k) {
    const __m256i raw = _mm256_maskz_loadu_epi8(mb, p + 2 * m + 4 * m * k);
    if constexpr (kNibbles) {
      const __m256i m4 = _mm256_set1_epi8(0x0f);
      q[k] = _mm256_and_si256(raw, m4);
      q[4 + k] = _mm256_andnot_si256(m4, raw);  // 16 * code: the dot is divided by 16 below
    } else {
      q[k] = _mm256_xor_si256(raw, _mm256_set1_epi8(static_cast<char>(0x80)));
    }
  }
  auto ld = [](const int8_t* x) SLMC_INLINE {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  };
  // The lane dots of group_dot<kTwo, kNibbles> (exact int32 sums: their order does not matter).
  auto plane = [&](const int8_t* x, __m256i seed) SLMC_INLINE {
    __m256i d0 = _mm256_dpbusd_epi32(seed, q[0], ld(x));
    __m256i d1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q[4], ld(x + 256));
    SLMC_UNROLL
    for (int k = 1; k < 4; ++k) {
      d0 = _mm256_dpbusd_epi32(d0, q[k], ld(x + 64 * k));
      d1 = _mm256_dpbusd_epi32(d1, q[4 + k], ld(x + 256 + 64 * k));
    }
    if constexpr (kNibbles) d1 = _mm256_srai_epi32(d1, 4);
    return _mm256_add_epi32(d0, d1);
  };
  const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(init));
  __m256i d;
  if constexpr (!kTwo) {
    d = plane(xg, i0);
  } else {
    const __m256i h = plane(xg, _mm256_setzero_si256());
    d = _mm256_add_epi32(_mm256_slli_epi32(h, 8), plane(xg + lo, i0));
  }
  const __m256 f = _mm256_mul_ps(dw, _mm256_loadu_ps(sc));
  return _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(d)), _mm512_zextps256_ps512(f),
                         acc);
}

// Matrix x vector on packed weights: one function streams all its rows (no per-row calls).
template <bool kNibbles, bool kTwo>
void packed_matvec(const GemmArgs& a) {
  using K = PackedK<kNibbles, kTwo>;
  const int64_t nb = a.n / 32, full = nb / 16;
  const int8_t* xq = a.x.q8;
  const int64_t lo = a.x.lo_offset;
  const int32_t* xi = a.x.lane_init;
  const float* xs = a.x.lane_scale;
  // The 16 fp32 lanes of row r's sum (reduced by the caller).
  auto row_lanes = [&](int64_t r) SLMC_INLINE {
    const uint8_t* row = a.w + static_cast<size_t>(r) * a.row_bytes;
    __m512 acc = _mm512_setzero_ps();
    auto step = [&](auto is_full, int64_t s) SLMC_INLINE {
      constexpr bool kFull = decltype(is_full)::value;
      const uint8_t* p = row + s * 16 * K::kBlockBytes;
      prefetch_ahead<16 * K::kBlockBytes>(p);
      __m512i q[8];
      __m512 dw;
      K::template load_group<kFull, kNibbles>(p, nb - 16 * s, q, dw);
      // Q4_0 keeps its high nibbles in place: no tokens to amortize unpacking over.
      const __m512i d = group_dot<kTwo, kNibbles>(q, xq + 512 * s, lo, load512(xi + 16 * s));
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw, _mm512_loadu_ps(xs + 16 * s)),
                            acc);
    };
    int64_t s = 0;
    for (; s < full; ++s) step(Full<true>{}, s);
    if (s * 16 < nb) {
      if (nb - 16 * s <= 8) {
        prefetch_ahead<8 * K::kBlockBytes>(row + s * 16 * K::kBlockBytes);
        acc = packed_half_group<kNibbles, kTwo>(row + s * 16 * K::kBlockBytes, nb - 16 * s,
                                                xq + 512 * s, lo, xi + 16 * s, xs + 16 * s, acc);
      } else {
        step(Full<false>{}, s);
      }
    }
    return acc;
  };
  int64_t r = a.r0;
  // 16 rows at a time: their sums reduced together (reduce16), each exactly as
  // _mm512_reduce_add_ps would.
  for (; r + 16 <= a.r1; r += 16) {
    __m512 v[16];
    SLMC_UNROLL
    for (int k = 0; k < 16; ++k) v[4 * (k % 4) + k / 4] = row_lanes(r + k);  // rows in order
    _mm512_storeu_ps(a.y + r, avx512::reduce16(v));
  }
  for (; r < a.r1; ++r) a.y[r] = _mm512_reduce_add_ps(row_lanes(r));
}

template <bool kNibbles, bool kTwo>
void packed_gemm_for(const GemmArgs& a) {
  if (a.x.T == 1) return packed_matvec<kNibbles, kTwo>(a);
  gemm<PackedK<kNibbles, kTwo>>(a);
}
void q8_0_packed_gemm(const GemmArgs& a) {
  if (a.x.lo_offset != 0) return packed_gemm_for<false, true>(a);
  packed_gemm_for<false, false>(a);
}
void q4_0_packed_gemm(const GemmArgs& a) {
  if (a.x.lo_offset != 0) return packed_gemm_for<true, true>(a);
  packed_gemm_for<true, false>(a);
}

// Q4_K fused: a super-block's dot with 256 activations without materialising the weights. Per
// sub-block j of 32, sum_i (d sc_j q_i - dmin m_j) x_i = (d sc_j) sum q_i x_i - (dmin m_j) sum x_i
// (the factors are the reference dequantizer's d1 = d * sc and m1 = dmin * m).
// ggml's get_scale_min_k4, repeated here with internal linkage: this unit is built for AVX-512 and
// must not lend an inline copy of the codec's function to other units (kernels_internal.h).
void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

float q4_k_block_dot(const uint8_t* blk, const float* x) {
  const codec::BlockQ4_K* b = reinterpret_cast<const codec::BlockQ4_K*>(blk);
  const float d = f16(blk), dmin = f16(blk + 2);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  __m512 acc = _mm512_setzero_ps();
  for (int c = 0; c < 4; ++c) {  // 64 weights: qs[32 c .. 32 c + 32), low then high nibbles
    uint8_t sc0, m0, sc1, m1;
    scale_min_k4(2 * c, b->scales, &sc0, &m0);
    scale_min_k4(2 * c + 1, b->scales, &sc1, &m1);
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 32 * c));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 32 * c + 16));
    const float* xc = x + 64 * c;
    const __m512 x0 = _mm512_loadu_ps(xc), x1 = _mm512_loadu_ps(xc + 16),
                 x2 = _mm512_loadu_ps(xc + 32), x3 = _mm512_loadu_ps(xc + 48);
    auto nib = [](__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); };
    const __m512 lo = _mm512_fmadd_ps(nib(_mm_and_si128(q0, low4)), x0,
                                      _mm512_mul_ps(nib(_mm_and_si128(q1, low4)), x1));
    const __m512 hi = _mm512_fmadd_ps(nib(_mm_and_si128(_mm_srli_epi16(q0, 4), low4)), x2,
                                      _mm512_mul_ps(nib(_mm_and_si128(_mm_srli_epi16(q1, 4), low4)), x3));
    acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc0), lo, acc);
    acc = _mm512_fnmadd_ps(_mm512_set1_ps(dmin * m0), _mm512_add_ps(x0, x1), acc);
    acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sc1), hi, acc);
    acc = _mm512_fnmadd_ps(_mm512_set1_ps(dmin * m1), _mm512_add_ps(x2, x3), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void kquant_gemm_avx512(const GemmArgs& a) {
  if (a.wf == codec::Format::kQ4_K) {
    const int64_t nb = a.n / 256;
    for (int64_t r = a.r0; r < a.r1; ++r) {
      const uint8_t* row = a.w + static_cast<size_t>(r) * a.row_bytes;
      for (int64_t t = 0; t < a.x.T; ++t) {
        const float* x = a.x.f32 + t * a.n;
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) acc += q4_k_block_dot(row + 144 * b, x + 256 * b);
        a.y[t * a.ldy + r] = acc;
      }
    }
    return;
  }
  kquant_gemm(a, [](const float* w, const float* x) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    for (int k = 0; k < 256; k += 64) {
      s0 = _mm512_fmadd_ps(_mm512_load_ps(w + k), _mm512_loadu_ps(x + k), s0);
      s1 = _mm512_fmadd_ps(_mm512_load_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), s1);
      s2 = _mm512_fmadd_ps(_mm512_load_ps(w + k + 32), _mm512_loadu_ps(x + k + 32), s2);
      s3 = _mm512_fmadd_ps(_mm512_load_ps(w + k + 48), _mm512_loadu_ps(x + k + 48), s3);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  });
}

// Constant-initialized: taking its address runs no AVX-512 code.
const IsaKernels kAvx512Kernels = {f32_gemm,         f16_gemm,    bf16_gemm,    q8_0_gemm,
                                   q4_0_gemm,        q4_g64_gemm, q4_g128_gemm, q8_0_packed_gemm,
                                   q4_0_packed_gemm, quantize,    sum4,         kquant_gemm_avx512};

}  // namespace

const IsaKernels* avx512_kernels() { return &kAvx512Kernels; }

}  // namespace slmc::runtime::internal
