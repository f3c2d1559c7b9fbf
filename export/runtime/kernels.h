// Matrix x vector (decode) and matrix x matrix (prefill) kernels per weight format, with the
// instruction set chosen at run time and a scalar path that runs anywhere. Weights are rows of a
// (n_rows, n_cols) matrix in a codec format (quantize/codec/formats.h); activations are prepared
// once per input (fp32, or int8 blocks where integer dot products win) and shared by the threads
// that each take a range of rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "quantize/codec/formats.h"

namespace slmc::runtime {

class ThreadPool;  // thread_pool.h

// Allocator for the activation buffers: 64-byte aligned, so the kernels' 512-bit loads of a
// 64-byte-aligned offset never split a cache line (a split load costs two).
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheAlignedAllocator<U>&) const {
    return false;
  }
};
template <typename T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

// kAvx512: F, BW, VL, VNNI. kAmx: kAvx512 plus AMX-TILE and AMX-INT8 with the OS's permission
// to use tile data (Linux arch_prctl(ARCH_REQ_XCOMP_PERM), requested once per process). kAmx runs
// every kernel of kAvx512 except the prefill of packed Q4_0 / Q8_0 weights (kAmxMinTokens).
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAmx = 3 };

const char* isa_name(Isa isa);
// The best ISA this CPU and OS support (cpuid + xgetbv, and for kAmx the tile permission);
// SLMC_ISA=scalar|avx2|avx512|amx lowers it (never raises it). Computed once.
Isa best_isa();
// What the hardware supports, ignoring SLMC_ISA. Kernels reject an `isa` above it.
Isa hardware_isa();
// The SIMD level of `isa` for code without AMX kernels (vector ops): kAmx -> kAvx512.
Isa vector_isa(Isa isa);
// Parses "scalar", "avx2", "avx512", "amx" (case-insensitive); false for anything else.
bool isa_from_name(const char* name, Isa* out);

// How weight rows are arranged in memory. kCodec: the codec's bytes (ggml's blocks), as stored in
// files. kPacked: the same blocks regrouped once by pack_rows() so that the SIMD kernels read 16
// blocks' scales and codes as whole vectors (no shuffles); a row keeps its byte size and place,
// so a packed matrix can replace the original in memory. Only Q4_0 and Q8_0 have a packed
// arrangement (has_packed_layout); for other formats kPacked is the codec layout.
//
// Packed is the fast path (Q4_0 matrix x vector ~1.4x, prefill ~1.6x on Sapphire Rapids: the
// 18-byte stride of ggml blocks costs shuffles). To use it, a runtime packs each Q4_0 / Q8_0
// matrix once at load (pack_rows into a 64-byte-aligned buffer), passes WeightLayout::kPacked to
// prepare_acts for inputs of those matrices, and to dequantize_row for a packed embedding table.
//
// Packed row of Q4_0 / Q8_0: blocks in groups of 16 (the last group holds the m = nb % 16 left
// over, if any). A group of m blocks is m fp16 scales, then K chunks of 4m bytes (K = 4 for
// Q4_0, 8 for Q8_0) where chunk k holds bytes 4k..4k+3 of the qs of block 0, block 1, ... m-1.
enum class WeightLayout { kCodec = 0, kPacked = 1 };

// Isa::kAmx multiplies packed Q4_0 / Q8_0 weights by at least this many tokens with AMX-INT8
// tiles (prepare_acts then adds the tile copy Acts::amx); fewer tokens take the AVX-512 kernels.
// AMX pads to 16-token tiles, so its time is flat up to 16 tokens: on Sapphire Rapids it matched
// AVX-512 at 6-8 tokens and was 1.5-1.7x faster at 12 (768 x 768 and 2048 x 768, both precisions).
constexpr int64_t kAmxMinTokens = 12;

bool has_packed_layout(codec::Format wf);
// Writes `rows` rows of n columns from codec layout `w` to `out` (same size; must not overlap).
void pack_rows(codec::Format wf, const void* w, int64_t rows, int64_t n, void* out);

// How integer weight formats see the activations. Both quantize each block of `block` values
// with one fp32 scale from its largest magnitude (QuantizeFn in kernels_internal.h has the exact
// rounding):
//   kPrecise  ~16-bit codes c = 256 q_hi + q_lo held as two int8 planes, d_a = max|x| / 32512.
//             The activation error (d_a / 2; up to d_a for ~0.4% of values) is 256x below
//             int8's and far below any weight format's rounding, so the runtime computes what
//             LibTorch computes on the same artifact (fp32 activations, dequantized weights)
//             to well within the 0.1% perplexity that matters. Matrix x vector streams the same
//             weight bytes as kInt8 at the same speed (it is memory-bound); prefill does twice
//             the integer multiply-adds.
//   kInt8     llama.cpp's q8_0 activations: one int8 code per value (error <= max|x| / 254 per
//             block, as large as Q8_0's weight rounding, so it roughly doubles Q8_0's KL against
//             fp32). About 2x faster prefill; opt in knowingly.
enum class ActPrecision { kPrecise = 0, kInt8 = 1 };

const char* act_precision_name(ActPrecision p);  // "precise", "int8"
// Parses "precise", "int8" (case-insensitive); false for anything else.
bool act_precision_from_name(const char* name, ActPrecision* out);
// kPrecise, unless SLMC_ACTS=int8 asks for the fast int8 activations (read once).
ActPrecision default_act_precision();

// Activations for one matmul: T rows of n values, converted to what the weight format's dot
// product consumes. Reused across calls (buffers only grow).
//
// Float weight formats get the fp32 values. Integer formats get the activations quantized once
// (one fp32 scale d_a per `block` values, see ActPrecision), laid out in the order the weight
// format's SIMD dot product consumes them (kernels_internal.h), plus per-lane tables so the
// kernels never shuffle activations. The layout is the same for every ISA, so the scalar and SIMD
// paths see identical codes.
struct Acts {
  int64_t T = 0;  // tokens (rows of X)
  int64_t n = 0;  // columns
  codec::Format weight_format = codec::Format::kF32;
  WeightLayout weight_layout = WeightLayout::kCodec;  // of the weights these acts will meet
  ActPrecision precision = ActPrecision::kPrecise;    // integer formats only
  AlignedVector<float> f32;                           // (T, n), float weight formats only
  // Integer formats only. A value's code c is q_hi (kInt8) or 256 * q_hi + q_lo (kPrecise), its
  // value d_a * c; the tables below are in terms of c.
  int64_t n_pad = 0;           // codes per token and plane (n rounded up to the layout's unit)
  int64_t block = 0;           // activation block: 32 (q8_0, q4_0), 64 (q4_g64), 128 (q4_g128)
  int64_t lane_width = 0;      // codes per int32 accumulator lane (4, 8; 32 for packed weights)
  // Per token q_stride bytes of q8: the q_hi plane (n_pad codes) at 0 and, kPrecise, the q_lo
  // plane at lo_offset. kPrecise skews the planes and tokens by 256 bytes (lo_offset = n_pad +
  // 256, q_stride = 2 n_pad + 512): with power-of-two n_pad, the 16 activation streams of an
  // 8-token tile would otherwise all map to the same L1 sets (12 ways) and evict each other.
  int64_t q_stride = 0;
  int64_t lo_offset = 0;       // 0 for kInt8 (one plane)
  AlignedVector<uint8_t> q8;   // (T, q_stride) int8 codes, zero in padding and gaps
  AlignedVector<float> scale;  // (T, n_pad / block): d_a per block (0 in padding)
  AlignedVector<float> block_sums;   // (T, n_pad / block): d_a * sum(c) per block
  AlignedVector<float> lane_scale;   // (T, n_pad / lane_width): d_a of the lane's block
  AlignedVector<int32_t> lane_init;  // (T, n_pad / lane_width): -bias * sum of the lane's c
  AlignedVector<float> lane_sums;    // (T, n_pad / lane_width): d_a * sum of the lane's c
  // Isa::kAmx, packed weights, T >= kAmxMinTokens only (else amx_tiles = 0 and both empty): the
  // codes again, as AMX A tiles. Tokens in tiles of 16 (the last one zero padded); per tile and
  // block of 32 codes (n_pad / 32 blocks), 16 * planes rows of 32 bytes in natural order, row
  // planes * j + p = plane p (0: q_hi, 1: q_lo) of token j of the tile. amx_scale has the
  // matching d_a, (amx_tiles, n_pad / 32, 16), zero for padding.
  int64_t amx_tiles = 0;
  AlignedVector<int8_t> amx;
  AlignedVector<float> amx_scale;
};

// Prepares X (T x n, row-major fp32) for weights of format `wf` stored in `layout`. n must fit
// wf's block size. `precision` matters for integer formats only. With a `pool`, 32 tokens or more
// are quantized by all its threads (whole 16-token tiles each); the bytes are the same.
void prepare_acts(codec::Format wf, const float* x, int64_t T, int64_t n, Acts* out, Isa isa,
                  WeightLayout layout = WeightLayout::kCodec,
                  ActPrecision precision = ActPrecision::kPrecise, ThreadPool* pool = nullptr);

// Y[t * ldy + r] = dot(W row r, X row t) for rows r in [r0, r1) and all T tokens of `x`.
// `w` points at row 0; rows are codec::row_bytes(wf, n) bytes apart, in the layout `x` was
// prepared for (x.weight_layout): raw bytes carry no tag, so the caller keeps the two in step.
// Integer formats compute the sum over blocks of d_w * d_a * (integer dot of the codes), so the
// result differs from the fp32 dot by the activation quantization error (at most
// sum |w| * d_a per block, about half that for most values, d_a as in x.scale; see
// ActPrecision) plus fp32 accumulation rounding. Safe to call concurrently on disjoint row ranges
// with the same `x`. Weights and `y` need no alignment; 64-byte-aligned weight rows (as .slm
// stores them) stream fastest.
void gemm_rows(codec::Format wf, const void* w, const Acts& x, float* y, int64_t ldy, int64_t r0,
               int64_t r1, Isa isa);

// Dequantizes row `r` of W (n values) into `out` (embedding lookups).
void dequantize_row(codec::Format wf, const void* w, int64_t n, int64_t r, float* out,
                    WeightLayout layout = WeightLayout::kCodec);

}  // namespace slmc::runtime
