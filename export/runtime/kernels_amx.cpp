// AMX-INT8 prefill (matrix x matrix, T >= kAmxMinTokens) of packed Q4_0 / Q8_0 weights. Built
// with the AVX-512 flags plus -mamx-tile -mamx-int8 and called only for Isa::kAmx, which
// cpu_features.cpp grants after it saw AMX-TILE, AMX-INT8, the OS's tile state and got the
// process's tile permission. Like the other ISA units it emits nothing with external linkage but
// amx_kernels() (kernels_internal.h): no std:: templates here.
//
// Every 32-weight block has its own weight scale (per row) and activation scale (per token), so
// each block's integer dot is a tile product of its own, K = 32:
//   C (16 tokens x 16 rows, int32) = A (16 tokens x 32 codes) . B (8 x 64 bytes: 16 rows x 32
//   weights in the VNNI order, B[k][4r + c] = weight 4k + c of row r)
// with tdpbssd (both sides signed: Q4_0 nibbles become q - 8 when B is built, Q8_0 codes are
// used as they are). C is stored and scaled into fp32 accumulators with AVX-512:
// acc[token] += float(C[token]) * (d_w[rows] * d_a[token]).
// Precise activations (two planes) put both planes of 8 tokens in one A tile (row 2j = q_hi, row
// 2j + 1 = q_lo of token j, Acts::amx) and combine the two C rows exactly in int32 as
// (C_hi << 8) + C_lo (kernels_internal.h: |.| < 2^31 with a margin of 5x).
//
// The weights stay packed in memory (decode reads them). Per 16 rows and group of 16 blocks the B
// tiles are built once into an L1-resident scratch (16 x 16 dword transposes of the packed
// chunks, whose int32 lane i is block i) and reused by every 16-token tile: the loop nest is
// row block (16 rows) > group (16 blocks) > token tile (16 tokens) > block, with the fp32
// partial sums of each token tile kept in a per-thread buffer between groups.
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "export/runtime/kernels_internal.h"

namespace slmc::runtime::internal {
namespace {

#define SLMC_UNROLL _Pragma("GCC unroll 16")
#define SLMC_INLINE __attribute__((always_inline))

// Palette 1 tile configuration (Intel SDM, LDTILECFG).
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles 0-3: C (16 x 16 int32); 4, 5: A (16 rows x 32 codes); 6, 7: B (8 x 64 bytes). Blocks
// alternate between two sets (C 0/1 and 2/3, A 4 and 5 in int8 mode, B 6 and 7) so that one
// block's tile products overlap the previous block's store and scaling.
void configure_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int i = 0; i < 4; ++i) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  for (int i = 4; i < 6; ++i) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 32;
  }
  for (int i = 6; i < 8; ++i) {
    cfg.rows[i] = 8;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
}

// A per-thread buffer that only grows (freed when its thread ends).
struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  void* get(size_t bytes) {
    if (bytes > cap) {
      std::free(p);
      cap = (bytes + 4095) / 4096 * 4096;
      p = std::aligned_alloc(64, cap);
      if (p == nullptr) std::abort();
    }
    return p;
  }
};
thread_local Scratch t_acc;

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// v[i] lane j -> v[j] lane i (16 x 16 dwords).
SLMC_INLINE inline void transpose16(__m512i (&v)[16]) {
  __m512i a[16];
  SLMC_UNROLL
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  // b[4i + c], 128-bit lane L: element 4L + c of rows 4i .. 4i + 3.
  __m512i b[16];
  SLMC_UNROLL
  for (int i = 0; i < 4; ++i) {
    b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  SLMC_UNROLL
  for (int c = 0; c < 4; ++c) {
    const __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x44);
    const __m512i e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xee);
    const __m512i e2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x44);
    const __m512i e3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xee);
    v[c] = _mm512_shuffle_i32x4(e0, e2, 0x88);
    v[4 + c] = _mm512_shuffle_i32x4(e0, e2, 0xdd);
    v[8 + c] = _mm512_shuffle_i32x4(e1, e3, 0x88);
    v[12 + c] = _mm512_shuffle_i32x4(e1, e3, 0xdd);
  }
}

// B tiles of one group (m <= 16 blocks) of `nrows` <= 16 rows starting at `w` (rows row_bytes
// apart; missing rows are zero): bt + 512 b = block b's tile, dws + 16 b = its 16 row scales.
// Packed chunk k of a row holds bytes 4k..4k+3 of block i in int32 lane i (kernels.h), so the
// transposed chunk k of 16 rows is row k of every block's B tile (Q4_0: low nibbles -> row k,
// high nibbles -> row k + 4, as weights 16 + 4k + c of the block).
template <bool kNibbles>
void build_b(const uint8_t* w, size_t row_bytes, int64_t nrows, int64_t m, int8_t* bt,
             float* dws) {
  constexpr int kChunks = kNibbles ? 4 : 8;
  const bool full = m == 16;
  const __mmask64 mb = m >= 16 ? ~0ull : (1ull << (4 * m)) - 1;
  __m512i v[16];
  // v[i] = row i's 64 bytes from `full_load` (16 blocks) or `part_load` (m < 16), zero past the
  // last row; then transposed.
  auto gather = [&](auto full_load, auto part_load) {
    SLMC_UNROLL
    for (int i = 0; i < 16; ++i) {
      const uint8_t* p = w + static_cast<size_t>(i) * row_bytes;
      v[i] = i >= nrows ? _mm512_setzero_si512() : full ? full_load(p) : part_load(p);
    }
    transpose16(v);
  };
  gather(
      [](const uint8_t* p) {
        return _mm512_castps_si512(
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
      },
      [m](const uint8_t* p) {
        return _mm512_castps_si512(
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << m) - 1), p)));
      });
  for (int64_t b = 0; b < m; ++b) _mm512_store_si512(dws + 16 * b, v[b]);
  // The transpose moves whole dwords, so the nibbles are split after it: one transpose per
  // packed chunk gives both the low-nibble row k and the high-nibble row k + 4.
  const __m512i m4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
  for (int k = 0; k < kChunks; ++k) {
    gather([k](const uint8_t* p) { return load512(p + 32 + 64 * k); },
           [k, m, mb](const uint8_t* p) { return _mm512_maskz_loadu_epi8(mb, p + 2 * m + 4 * m * k); });
    for (int64_t b = 0; b < m; ++b) {
      if constexpr (kNibbles) {
        _mm512_store_si512(bt + 512 * b + 64 * k,
                           _mm512_sub_epi8(_mm512_and_si512(v[b], m4), eight));
        _mm512_store_si512(bt + 512 * b + 64 * (k + 4),
                           _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v[b], 4), m4), eight));
      } else {
        _mm512_store_si512(bt + 512 * b + 64 * k, v[b]);
      }
    }
  }
}

// One block's tile products (int8: one C tile, 16 token rows of 16 int32; precise: two C tiles,
// rows 2j / 2j + 1 = q_hi / q_lo dots of token j of each half), left in tile set S's C tiles, and
// their store to cbuf. The kernel stores a block's C only after it issued the next block's
// products into the other set, so the store, which must wait for its product, does not hold up
// the next products: in a tile-only loop 9.4 ns per tile product against 13.5 with the store
// right after the product (this machine, 2026-11), and the int8 / precise kernel 1.08x / 1.15x.

// (GCC's tile intrinsics paste the tile number into the instruction text: literals only.)
#define SLMC_BLOCK_PRODUCT_INT8(C, A, B) \
  _tile_loadd(B, bt, 64);                \
  _tile_loadd(A, a, 32);                 \
  _tile_zero(C);                         \
  _tile_dpbssd(C, A, B)
#define SLMC_BLOCK_PRODUCT_TWO(C0, C1, B) \
  _tile_loadd(B, bt, 64);                 \
  _tile_loadd(4, a, 32);                  \
  _tile_loadd(5, a + 512, 32);            \
  _tile_zero(C0);                         \
  _tile_zero(C1);                         \
  _tile_dpbssd(C0, 4, B);                 \
  _tile_dpbssd(C1, 5, B)

template <bool kTwo, int S>
SLMC_INLINE inline void block_product(const int8_t* a, const int8_t* bt) {
  if constexpr (!kTwo) {
    if constexpr (S == 0) {
      SLMC_BLOCK_PRODUCT_INT8(0, 4, 6);
    } else {
      SLMC_BLOCK_PRODUCT_INT8(2, 5, 7);
    }
  } else {
    if constexpr (S == 0) {
      SLMC_BLOCK_PRODUCT_TWO(0, 1, 6);
    } else {
      SLMC_BLOCK_PRODUCT_TWO(2, 3, 7);
    }
  }
}
#undef SLMC_BLOCK_PRODUCT_INT8
#undef SLMC_BLOCK_PRODUCT_TWO

template <bool kTwo, int S>
SLMC_INLINE inline void block_store(int32_t* cbuf) {
  if constexpr (S == 0) {
    _tile_stored(0, cbuf, 64);
    if constexpr (kTwo) _tile_stored(1, cbuf + 256, 64);
  } else {
    _tile_stored(2, cbuf, 64);
    if constexpr (kTwo) _tile_stored(3, cbuf + 256, 64);
  }
}

// acc[j] += float(dot of token j) * dw * da[j] for the 16 tokens of a tile.
template <bool kTwo>
SLMC_INLINE inline void scale_add(const int32_t* cbuf, const float* dw_p, const float* da,
                                  __m512 (&acc)[16]) {
  const __m512 dw = _mm512_load_ps(dw_p);
  SLMC_UNROLL
  for (int j = 0; j < 16; ++j) {
    __m512i c;
    if constexpr (!kTwo) {
      c = _mm512_load_si512(cbuf + 16 * j);
    } else {  // token j: C tile j / 8, rows 2 (j % 8) and 2 (j % 8) + 1 = cbuf + 32 j, + 16
      c = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(cbuf + 32 * j), 8),
                           _mm512_load_si512(cbuf + 32 * j + 16));
    }
    acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), _mm512_mul_ps(dw, _mm512_set1_ps(da[j])),
                             acc[j]);
  }
}

// How many blocks the tile products run ahead of the scaling (so that a block's C is in memory
// when its scaling loads it; it is stored one issue after its products, so at least 1).
// 1, 2, 4 and 7 measured within 3% of each other with the stores right after the products; with
// the delayed stores 2 and 3 are equal and 1 is up to 7% slower.
constexpr int64_t kAhead = 2;
constexpr int64_t kRing = 4;  // C buffers in flight (> kAhead)

template <bool kNibbles, bool kTwo>
void amx_gemm(const GemmArgs& a) {
  const ActView& x = a.x;
  constexpr int64_t kBlockBytes = kNibbles ? 18 : 34;
  constexpr int64_t kTileBytes = 16 * (kTwo ? 2 : 1) * 32;  // A rows of one block, 16 tokens
  constexpr int64_t kC = kTwo ? 512 : 256;                  // int32 per C buffer
  const int64_t nb = a.n / 32, nbp = x.n_pad / 32, T = x.T, tiles = x.amx_tiles;
  float* accbuf = static_cast<float*>(t_acc.get(static_cast<size_t>(tiles) * 256 * sizeof(float)));
  alignas(64) int8_t bt[16 * 512];
  alignas(64) float dws[16 * 16];
  alignas(64) int32_t cbuf[kRing][kC];
  configure_tiles();
  for (int64_t rb = a.r0; rb < a.r1; rb += 16) {
    const int64_t nrows = a.r1 - rb < 16 ? a.r1 - rb : 16;
    const uint8_t* w = a.w + static_cast<size_t>(rb) * a.row_bytes;
    for (int64_t g = 0; g * 16 < nb; ++g) {
      const int64_t m = nb - 16 * g < 16 ? nb - 16 * g : 16;
      build_b<kNibbles>(w + g * 16 * kBlockBytes, a.row_bytes, nrows, m, bt, dws);
      // The weights of the next group (or the next row block's first): from DRAM, 16 rows apart,
      // which the hardware prefetchers follow poorly. They arrive during this group's tiles.
      {
        const bool last = (g + 1) * 16 >= nb;
        const uint8_t* nw = last ? w + 16 * a.row_bytes : w + (g + 1) * 16 * kBlockBytes;
        const int64_t nr = last ? (a.r1 - rb - 16 < 16 ? a.r1 - rb - 16 : 16) : nrows;
        for (int64_t i = 0; i < nr; ++i)
          for (int64_t o = 0; o < 16 * kBlockBytes + 64; o += 64)
            _mm_prefetch(reinterpret_cast<const char*>(nw + i * a.row_bytes + o), _MM_HINT_T0);
      }
      // Items i = tt * m + b (token tile tt, block b) in order; item i uses tile set i % 2 and
      // C buffer i % kRing. The products of item i + kAhead are issued before the scaling of i.
      const int64_t items = tiles * m;
      int64_t next = 0, next_tt = 0, next_b = 0;
      // Item i's C is stored when item i + 1 is issued (or right away for the group's last).
      auto issue = [&]() SLMC_INLINE {
        const int8_t* ap = x.amx + (next_tt * nbp + 16 * g + next_b) * kTileBytes;
        const bool last = next + 1 == items;
        if (next & 1) {
          block_product<kTwo, 1>(ap, bt + 512 * next_b);
          block_store<kTwo, 0>(cbuf[(next - 1) % kRing]);
          if (last) block_store<kTwo, 1>(cbuf[next % kRing]);
        } else {
          block_product<kTwo, 0>(ap, bt + 512 * next_b);
          if (next > 0) block_store<kTwo, 1>(cbuf[(next - 1) % kRing]);
          if (last) block_store<kTwo, 0>(cbuf[next % kRing]);
        }
        ++next;
        if (++next_b == m) {
          next_b = 0;
          ++next_tt;
        }
      };
      while (next < items && next < kAhead) issue();
      int64_t i = 0;
      for (int64_t tt = 0; tt < tiles; ++tt) {
        float* ab = accbuf + tt * 256;
        __m512 acc[16];
        SLMC_UNROLL
        for (int j = 0; j < 16; ++j)
          acc[j] = g == 0 ? _mm512_setzero_ps() : _mm512_load_ps(ab + 16 * j);
        const float* sc = x.amx_scale + (tt * nbp + 16 * g) * 16;
        for (int64_t b = 0; b < m; ++b, ++i) {
          if (next < items) issue();
          scale_add<kTwo>(cbuf[i % kRing], dws + 16 * b, sc + 16 * b, acc);
        }
        SLMC_UNROLL
        for (int j = 0; j < 16; ++j) _mm512_store_ps(ab + 16 * j, acc[j]);
      }
    }
    const __mmask16 rows_mask = static_cast<__mmask16>((1u << nrows) - 1);
    for (int64_t t = 0; t < T; ++t)
      _mm512_mask_storeu_ps(a.y + t * a.ldy + rb, rows_mask, _mm512_load_ps(accbuf + 16 * t));
  }
  _tile_release();
}

void q8_0_packed(const GemmArgs& a) {
  if (a.x.lo_offset != 0) return amx_gemm<false, true>(a);
  amx_gemm<false, false>(a);
}
void q4_0_packed(const GemmArgs& a) {
  if (a.x.lo_offset != 0) return amx_gemm<true, true>(a);
  amx_gemm<true, false>(a);
}

// Constant-initialized: taking its address runs no AMX or AVX-512 code.
const AmxKernels kAmxKernels = {q8_0_packed, q4_0_packed};

}  // namespace

const AmxKernels* amx_kernels() { return &kAmxKernels; }

}  // namespace slmc::runtime::internal
