// Private interface between the dispatcher (kernels.cpp) and the per-instruction-set translation
// units (kernels_avx2.cpp, kernels_avx512.cpp). Those units are compiled with -mavx2 / -mavx512*,
// so this header is deliberately plain C++: POD views and function pointers, no std:: templates
// and no inline functions with external linkage. An inline function emitted from an AVX-512 unit
// could otherwise be picked by the linker for every caller and fault on an older CPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quantize/codec/formats.h"

namespace slmc::runtime::internal {

// Activation codes: per token, one (int8 mode) or two (precise mode) planes of n_pad int8 codes,
// each in the layout below (the q_lo plane lo_offset bytes after q_hi, tokens q_stride apart).
// A value's code is c = q_hi (int8) or c = 256 * q_hi + q_lo (precise: q_lo is the rounded
// residual of q_hi, see QuantizeFn), and its value is d_a * c. The kernels take the integer dot
// product with each plane and combine them exactly in int32 as (dot_hi << 8) + dot_lo: both
// planes are signed int8, so every u8 x s8 instruction (vpdpbusd, vpmaddubsw) and every weight
// decoding serve the precise mode unchanged.
//
// Plane layouts (per plane `n_pad` bytes, zero padded):
//   kQ8_0   natural order, blocks of 32, n_pad = n rounded up to 64.
//           An accumulator lane covers 4 codes (one vpdpbusd lane).
//   kQ4_0   "quads" of 4 blocks (128 weights). In quad g, byte 128g + 64h + 16b + j holds weight
//           16h + j of block 4g + b: h = 0 holds the weights the low nibbles of the Q4_0 block
//           multiply, h = 1 the high nibbles, so one 64-byte load of nibbles of 4 consecutive
//           blocks lines up with one 64-byte load of codes. n_pad = n rounded up to 128.
//           A lane covers 8 codes: bytes 4i..4i+3 of both halves, all of block 4g + i/4.
//   kQ4_G64 pairs of groups (A = 2p, B = 2p + 1): byte 128p + [0,32) = A weights 0..31,
//           [32,64) = B 0..31, [64,96) = A 32..63, [96,128) = B 32..63. Activation blocks are
//           64 (one scale per weight group). n_pad = n rounded up to 128.
//           A lane covers 8 codes: bytes 4i..4i+3 of both 64-byte halves of the pair.
//   kQ4_G128 natural order, activation blocks of 128 (one scale per weight group), n_pad = n.
//   kPacked16 (packed Q4_0 and Q8_0 weights) groups of 16 blocks: in group g, byte
//           512g + 64j + 4i + c holds weight 4j + c of block 16g + i (j < 8, i < 16, c < 4), so
//           vector j of a group meets chunk j of packed Q8_0 and the low (j < 4) or high
//           (j - 4) nibbles of chunk j % 4 of packed Q4_0, and int32 lane i is block i.
//           n_pad = n rounded up to 512. A lane is a whole block (lane_width 32).
// Lane arrays (n_pad / lane_width entries per token) give the kernels what they need per int32
// accumulator lane without shuffles, in terms of the combined codes c: lane_scale = d_a of the
// lane's block, lane_init = -bias * sum(c of the lane) (bias 128 for Q8_0 with the xor-0x80
// trick, 8 for Q4_0), lane_sums = d_a * sum(c of the lane) (zero-point term of the q4_g formats).
//
// int32 range of the precise mode, per lane and kernel step: |dot_hi| <= 32 * 255 * 127
// (~1.04e6, a block of xor-biased Q8_0 codes), shifted: 2.7e8; |lane_init| <= 128 * 32 * 32639
// (1.3e8); the sum stays below 2^31 with a margin of 5x.
enum class Layout : int { kFloat = 0, kQ8_0, kQ4_0, kQ4_G64, kQ4_G128, kPacked16 };

// Trivial aggregates (value-initialize them: `ActView v{}`), so that no constructor is ever
// emitted from an ISA unit.
struct ActView {
  int64_t T;                // tokens
  int64_t n;                // columns
  int64_t n_pad;            // codes per token in q8
  int64_t block;            // activation quantization block
  int64_t lane_width;       // codes per accumulator lane
  int64_t q_stride;         // bytes per token in q8 (Acts::q_stride)
  int64_t lo_offset;        // 0 (int8: one plane) or where the q_lo plane starts (Acts)
  const float* f32;         // (T, n) float weights only
  const int8_t* q8;         // (T, q_stride): q_hi plane, then the q_lo plane if lo_offset
  const float* scale;       // (T, n_pad / block): d_a
  const float* block_sums;  // (T, n_pad / block): d_a * sum(q_a)
  const float* lane_scale;  // (T, n_pad / lane_width)
  const int32_t* lane_init;
  const float* lane_sums;
  int64_t amx_tiles;        // Acts::amx_tiles (0: no tile copy)
  const int8_t* amx;        // Acts::amx
  const float* amx_scale;   // Acts::amx_scale
};

struct GemmArgs {
  codec::Format wf = codec::Format::kF32;  // the weights' format (the K-quant kernel reads it)
  const uint8_t* w;  // row 0
  size_t row_bytes;
  int64_t n;  // columns
  ActView x;
  float* y;
  int64_t ldy;
  int64_t r0 = 0, r1;
};

using GemmFn = void (*)(const GemmArgs&);
// Quantizes `n` floats (a multiple of `block`) with one fp32 scale per block. Per block:
//   d1 = amax / 127, id = d1 != 0 ? 1 / d1 : 0, and per value t = x * id,
//   q_hi = clamp(round-half-even(t), -127, 127).
// q_lo == nullptr (int8): code c = q_hi, d[b] = d1.
// Otherwise (precise): q_lo = clamp(round-half-even(256 * (t - q_hi)), -127, 127) (t - q_hi is
//   exact in fp32 and at most 1/2 in magnitude), c = 256 * q_hi + q_lo and d[b] = d1 / 256:
//   |x - d c| <= d (1/2 + 2^-8), against 128 d for the int8 codes. The clamp keeps both planes
//   in [-127, 127] (the AVX2 sign trick cannot negate -128); it acts when t is within 1/512 of a
//   half-integer (~0.4% of values), whose error grows to at most d (1 + 2^-8).
// sums[b] = sum of the block's c. Every ISA gives the same bytes (same fp32 operations, same
// rounding).
using QuantizeFn = void (*)(const float* x, int64_t n, int64_t block, int8_t* q_hi, int8_t* q_lo,
                            float* d, int32_t* sums);

// out[i] = q[4i] + q[4i + 1] + q[4i + 2] + q[4i + 3] for i < n / 4 (n a multiple of 64).
using Sum4Fn = void (*)(const int8_t* q, int64_t n, int32_t* out);

struct IsaKernels {
  GemmFn f32, f16, bf16, q8_0, q4_0, q4_g64, q4_g128;
  GemmFn q8_0_packed, q4_0_packed;  // WeightLayout::kPacked
  QuantizeFn quantize;
  Sum4Fn sum4;
  GemmFn kquant;  // Q4_K, Q5_K, Q6_K, Q8_K (GemmArgs::wf says which), fp32 activations
};

// nullptr when the build has no such unit (non-x86 targets).
const IsaKernels* scalar_kernels();
const IsaKernels* avx2_kernels();
const IsaKernels* avx512_kernels();

// AMX-INT8 prefill of packed weights (kernels_amx.cpp, x86-64 builds only): need x.amx_tiles > 0.
struct AmxKernels {
  GemmFn q8_0_packed, q4_0_packed;
};
const AmxKernels* amx_kernels();

}  // namespace slmc::runtime::internal
