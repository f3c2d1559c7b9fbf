// Dispatcher, activation preparation and the scalar kernels (the path that runs anywhere and the
// oracle the SIMD units are tested against on identical quantized activations).
#include "export/runtime/kernels.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "export/runtime/kernels_internal.h"
#include "export/runtime/kernels_kquant.h"
#include "export/runtime/thread_pool.h"

namespace slmc::runtime {

namespace {

using codec::Format;
using internal::ActView;
using internal::GemmArgs;
using internal::IsaKernels;
using internal::Layout;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

Layout layout_of(Format wf) {
  switch (wf) {
    case Format::kF32:
    case Format::kF16:
    case Format::kBF16:
      return Layout::kFloat;
    case Format::kQ8_0:
      return Layout::kQ8_0;
    case Format::kQ4_0:
      return Layout::kQ4_0;
    case Format::kQ4_G64:
      return Layout::kQ4_G64;
    case Format::kQ4_G128:
      return Layout::kQ4_G128;
    case Format::kQ4_K:
    case Format::kQ5_K:
    case Format::kQ6_K:
    case Format::kQ8_K:
      return Layout::kFloat;  // fp32 activations: the K-quant kernel dequantizes super-blocks
  }
  fail("[kernels] unknown weight format id ", static_cast<uint32_t>(wf));
}

// Geometry of each integer layout (see kernels_internal.h).
struct LayoutGeometry {
  int64_t block;       // activation quantization block
  int64_t unit;        // n_pad is a multiple of this
  int64_t lane_width;  // codes per accumulator lane, 0: no lane tables
};

LayoutGeometry geometry(Layout l) {
  switch (l) {
    case Layout::kQ8_0:
      return {32, 64, 4};
    case Layout::kQ4_0:
      return {32, 128, 8};
    case Layout::kQ4_G64:
      return {64, 128, 8};
    case Layout::kQ4_G128:
      return {128, 128, 0};
    case Layout::kPacked16:
      return {32, 512, 32};
    case Layout::kFloat:
      break;
  }
  return {1, 1, 0};
}

// ---- packed weight rows (see WeightLayout) -----------------------------------------------

constexpr int64_t kGroup = 16;  // blocks per packed group

// Offsets inside a packed group of m blocks: block i's scale, and bytes 4k..4k+3 of its qs.
int64_t packed_scale_at(int64_t i) { return 2 * i; }
int64_t packed_chunk_at(int64_t m, int64_t k, int64_t i) { return 2 * m + 4 * m * k + 4 * i; }

// Codec row of nb blocks (block_bytes each: fp16 d, then qs) -> packed row of the same size.
void pack_row(const uint8_t* codec_row, int64_t nb, int64_t block_bytes, uint8_t* packed) {
  const int64_t K = (block_bytes - 2) / 4;  // 4-byte chunks of qs per block
  for (int64_t g = 0; g * kGroup < nb; ++g) {
    const int64_t m = std::min(kGroup, nb - g * kGroup);
    const uint8_t* blocks = codec_row + g * kGroup * block_bytes;
    uint8_t* group = packed + g * kGroup * block_bytes;
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(group + packed_scale_at(i), blocks + i * block_bytes, 2);
      for (int64_t k = 0; k < K; ++k)
        std::memcpy(group + packed_chunk_at(m, k, i), blocks + i * block_bytes + 2 + 4 * k, 4);
    }
  }
}

// The inverse of pack_row.
void unpack_row(const uint8_t* packed, int64_t nb, int64_t block_bytes, uint8_t* codec_row) {
  const int64_t K = (block_bytes - 2) / 4;
  for (int64_t g = 0; g * kGroup < nb; ++g) {
    const int64_t m = std::min(kGroup, nb - g * kGroup);
    const uint8_t* group = packed + g * kGroup * block_bytes;
    uint8_t* blocks = codec_row + g * kGroup * block_bytes;
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(blocks + i * block_bytes, group + packed_scale_at(i), 2);
      for (int64_t k = 0; k < K; ++k)
        std::memcpy(blocks + i * block_bytes + 2 + 4 * k, group + packed_chunk_at(m, k, i), 4);
    }
  }
}

const IsaKernels& kernels_for(Isa isa) {
  const IsaKernels* k = nullptr;
  switch (isa) {
    case Isa::kAmx:  // the AVX-512 kernels; gemm_rows adds the AMX prefill (amx_kernels)
    case Isa::kAvx512:
      k = internal::avx512_kernels();
      break;
    case Isa::kAvx2:
      k = internal::avx2_kernels();
      break;
    case Isa::kScalar:
      break;
  }
  if (k != nullptr) {
    SLMC_CHECK(static_cast<int>(isa) <= static_cast<int>(hardware_isa()), "[kernels] ISA ",
               isa_name(isa), " requested but this CPU supports only ", isa_name(hardware_isa()));
    return *k;
  }
  SLMC_CHECK(isa == Isa::kScalar, "[kernels] this build has no ", isa_name(isa), " kernels");
  return *internal::scalar_kernels();
}

// Scalar activation quantizer (QuantizeFn); the SIMD versions reproduce it bit for bit.
void quantize_scalar(const float* x, int64_t n, int64_t block, int8_t* q, int8_t* q_lo, float* d,
                     int32_t* sums) {
  for (int64_t b = 0; b < n / block; ++b, x += block, q += block) {
    float amax = 0.0f;
    for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    int32_t s = 0;
    for (int64_t j = 0; j < block; ++j) {
      // nearbyint rounds half to even in the default mode, like cvtps2dq.
      const float t = x[j] * id;
      const float hi = std::min(127.0f, std::max(-127.0f, std::nearbyint(t)));
      int32_t c = static_cast<int32_t>(hi);
      q[j] = static_cast<int8_t>(c);
      if (q_lo != nullptr) {
        // t - hi is exact (hi is t rounded, or t clamped to 127 when t barely exceeds it) and
        // scaling by 256 is exact, so the residual code is the only rounding.
        const float lo = std::min(127.0f, std::max(-127.0f, std::nearbyint((t - hi) * 256.0f)));
        q_lo[j] = static_cast<int8_t>(lo);
        c = 256 * c + static_cast<int32_t>(lo);
      }
      s += c;
    }
    d[b] = q_lo != nullptr ? db * (1.0f / 256.0f) : db;
    sums[b] = s;
    if (q_lo != nullptr) q_lo += block;
  }
}

// ---- scalar gemm kernels ------------------------------------------------------------------

template <typename Decode>
void float_gemm(const GemmArgs& a, Decode decode) {
  const int64_t n = a.n;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = a.w + static_cast<size_t>(r) * a.row_bytes;
    for (int64_t t = 0; t < a.x.T; ++t) {
      const float* x = a.x.f32 + t * n;
      float acc[8] = {};
      int64_t k = 0;
      for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; ++j) acc[j] += decode(row, k + j) * x[k + j];
      for (; k < n; ++k) acc[0] += decode(row, k) * x[k];
      float s = 0.0f;
      for (float v : acc) s += v;
      a.y[t * a.ldy + r] = s;
    }
  }
}

void scalar_f32(const GemmArgs& a) {
  float_gemm(a, [](const uint8_t* row, int64_t k) {
    float v;
    std::memcpy(&v, row + 4 * k, 4);
    return v;
  });
}
void scalar_f16(const GemmArgs& a) {
  float_gemm(a, [](const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    return f16_to_f32(h);
  });
}
void scalar_bf16(const GemmArgs& a) {
  float_gemm(a, [](const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    return bf16_to_f32(h);
  });
}

// The activation codes of token t (Acts): q_hi, and the q_lo plane `lo` bytes after it (lo = 0:
// int8 activations). code(i) is the combined code c of element i of the plane layout.
struct TokenCodes {
  const int8_t* q;
  int64_t lo;
  TokenCodes(const ActView& x, int64_t t) : q(x.q8 + t * x.q_stride), lo(x.lo_offset) {}
  int32_t code(int64_t i) const { return lo != 0 ? 256 * q[i] + q[lo + i] : q[i]; }
};

// The integer sums below stay in int32: |sum| <= 128 codes * 15 * 32639 (Q4_G128) or
// 32 * 127 * 32639 (Q8_0), both below 2^28.
void scalar_q8_0(const GemmArgs& a) {
  const int64_t nb = a.n / 32;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const auto* blk = reinterpret_cast<const codec::BlockQ8_0*>(a.w + r * a.row_bytes);
    for (int64_t t = 0; t < a.x.T; ++t) {
      const TokenCodes q(a.x, t);
      const float* da = a.x.scale + t * (a.x.n_pad / 32);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t s = 0;
        for (int j = 0; j < 32; ++j) s += blk[b].qs[j] * q.code(32 * b + j);
        acc += f16_to_f32(blk[b].d) * da[b] * static_cast<float>(s);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

void scalar_q4_0(const GemmArgs& a) {
  const int64_t nb = a.n / 32;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const auto* blk = reinterpret_cast<const codec::BlockQ4_0*>(a.w + r * a.row_bytes);
    for (int64_t t = 0; t < a.x.T; ++t) {
      const TokenCodes q(a.x, t);
      const float* da = a.x.scale + t * (a.x.n_pad / 32);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t lo = 128 * (b / 4) + 16 * (b % 4);  // see Layout::kQ4_0
        const int64_t hi = lo + 64;
        int32_t s = 0;
        for (int j = 0; j < 16; ++j)
          s += ((blk[b].qs[j] & 0x0f) - 8) * q.code(lo + j) +
               ((blk[b].qs[j] >> 4) - 8) * q.code(hi + j);
        acc += f16_to_f32(blk[b].d) * da[b] * static_cast<float>(s);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

// sum over groups of d_w * (d_a * sum(q_w * c) - z * d_a * sum(c)).
template <int G>
void scalar_q4g(const GemmArgs& a) {
  const int64_t ng = a.n / G;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const auto* blk = reinterpret_cast<const codec::BlockQ4G<G>*>(a.w + r * a.row_bytes);
    for (int64_t t = 0; t < a.x.T; ++t) {
      const TokenCodes q(a.x, t);
      const float* da = a.x.scale + t * (a.x.n_pad / G);
      const float* bs = a.x.block_sums + t * (a.x.n_pad / G);
      float acc = 0.0f;
      for (int64_t g = 0; g < ng; ++g) {
        // Layout::kQ4_G64: pairs of groups; Layout::kQ4_G128: natural order.
        const int64_t lo = G == 64 ? 128 * (g / 2) + 32 * (g % 2) : 128 * g;
        const int64_t hi = lo + 64;
        int32_t s = 0;
        for (int j = 0; j < G / 2; ++j)
          s += (blk[g].qs[j] & 0x0f) * q.code(lo + j) + (blk[g].qs[j] >> 4) * q.code(hi + j);
        acc +=
            f16_to_f32(blk[g].d) * (da[g] * static_cast<float>(s) - f16_to_f32(blk[g].z) * bs[g]);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

// Packed Q4_0 (kNibbles) / Q8_0: block b of group g has scale at 2i and code bytes 4k..4k+3 at
// 2m + 4mk + 4i (i = b % 16, m blocks in the group); activations in Layout::kPacked16.
template <bool kNibbles>
void scalar_packed(const GemmArgs& a) {
  const int64_t nb = a.n / 32, bb = kNibbles ? 18 : 34, K = kNibbles ? 4 : 8;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = a.w + r * a.row_bytes;
    for (int64_t t = 0; t < a.x.T; ++t) {
      const TokenCodes q(a.x, t);
      const float* da = a.x.scale + t * (a.x.n_pad / 32);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t g = b / kGroup, i = b % kGroup, m = std::min(kGroup, nb - g * kGroup);
        const uint8_t* grp = row + g * kGroup * bb;
        uint16_t dh;
        std::memcpy(&dh, grp + packed_scale_at(i), 2);
        int32_t s = 0;
        for (int64_t k = 0; k < K; ++k)
          for (int64_t c = 0; c < 4; ++c) {
            const uint8_t byte = grp[packed_chunk_at(m, k, i) + c];
            if (kNibbles) {  // low nibble: weight 4k + c, high nibble: weight 16 + 4k + c
              s += ((byte & 0x0f) - 8) * q.code(512 * g + 64 * k + 4 * i + c) +
                   ((byte >> 4) - 8) * q.code(512 * g + 64 * (4 + k) + 4 * i + c);
            } else {
              s += static_cast<int8_t>(byte) * q.code(512 * g + 64 * k + 4 * i + c);
            }
          }
        acc += f16_to_f32(dh) * da[b] * static_cast<float>(s);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

void sum4_scalar(const int8_t* q, int64_t n, int32_t* out) {
  for (int64_t i = 0; i < n / 4; ++i)
    out[i] = q[4 * i] + q[4 * i + 1] + q[4 * i + 2] + q[4 * i + 3];
}

void scalar_kquant(const GemmArgs& a) {
  internal::kquant_gemm(a, [](const float* w, const float* x) {
    float acc[8] = {};
    for (int64_t k = 0; k < 256; k += 8)
      for (int j = 0; j < 8; ++j) acc[j] += w[k + j] * x[k + j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  });
}

const IsaKernels kScalarKernels = {scalar_f32,      scalar_f16,           scalar_bf16,
                                   scalar_q8_0,     scalar_q4_0,          scalar_q4g<64>,
                                   scalar_q4g<128>, scalar_packed<false>, scalar_packed<true>,
                                   quantize_scalar, sum4_scalar,          scalar_kquant};

ActView view_of(const Acts& x) {
  ActView v{};
  v.T = x.T;
  v.n = x.n;
  v.n_pad = x.n_pad;
  v.block = x.block;
  v.lane_width = x.lane_width;
  v.q_stride = x.q_stride;
  v.lo_offset = x.lo_offset;
  v.f32 = x.f32.data();
  v.q8 = reinterpret_cast<const int8_t*>(x.q8.data());
  v.scale = x.scale.data();
  v.block_sums = x.block_sums.data();
  v.lane_scale = x.lane_scale.data();
  v.lane_init = x.lane_init.data();
  v.lane_sums = x.lane_sums.data();
  v.amx_tiles = x.amx_tiles;
  v.amx = x.amx.data();
  v.amx_scale = x.amx_scale.data();
  return v;
}

// Places one plane of a token's natural-order codes into the layout (zero padded).
void place_codes(Layout layout, const int8_t* nat, int64_t n, int64_t n_pad, int8_t* q) {
  if (n_pad > n) std::memset(q + n, 0, static_cast<size_t>(n_pad - n));
  const int64_t nb = n / 32;
  switch (layout) {
    case Layout::kPacked16:
      for (int64_t g = 0; g < n_pad / 512; ++g) {
        int8_t* dst = q + 512 * g;
        const int64_t m = std::min(kGroup, nb - g * kGroup);
        if (m < kGroup) std::memset(dst, 0, 512);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < 8; ++j)
            std::memcpy(dst + 64 * j + 4 * i, nat + 32 * (g * kGroup + i) + 4 * j, 4);
      }
      return;
    case Layout::kQ8_0:
    case Layout::kQ4_G128:
      std::memcpy(q, nat, static_cast<size_t>(n));
      return;
    case Layout::kQ4_0:
      for (int64_t b = 0; b < nb; ++b) {
        int8_t* dst = q + 128 * (b / 4) + 16 * (b % 4);
        std::memcpy(dst, nat + 32 * b, 16);
        std::memcpy(dst + 64, nat + 32 * b + 16, 16);
      }
      if (nb % 4 != 0) {  // the short last quad: zero the missing blocks' halves
        int8_t* quad = q + 128 * (nb / 4);
        for (int64_t b = nb % 4; b < 4; ++b) {
          std::memset(quad + 16 * b, 0, 16);
          std::memset(quad + 64 + 16 * b, 0, 16);
        }
      }
      return;
    case Layout::kQ4_G64: {
      const int64_t ng = n / 64;
      for (int64_t g = 0; g < ng; ++g) {
        int8_t* dst = q + 128 * (g / 2) + 32 * (g % 2);
        std::memcpy(dst, nat + 64 * g, 32);
        std::memcpy(dst + 64, nat + 64 * g + 32, 32);
      }
      if (ng % 2 != 0) {  // the short last pair
        std::memset(q + 128 * (ng / 2) + 32, 0, 32);
        std::memset(q + 128 * (ng / 2) + 96, 0, 32);
      }
      return;
    }
    case Layout::kFloat:
      return;
  }
}

// Sums of 4 consecutive combined codes of a placed token: s4[i] = sum of c over bytes 4i..4i+3
// of the plane(s), c = q_hi or 256 q_hi + q_lo. `tmp` is scratch of n_pad / 4 entries.
void sum4_codes(const IsaKernels& k, const int8_t* q_hi, const int8_t* q_lo, int64_t n_pad,
                int32_t* s4, int32_t* tmp) {
  k.sum4(q_hi, n_pad, s4);
  if (q_lo == nullptr) return;
  k.sum4(q_lo, n_pad, tmp);
  for (int64_t i = 0; i < n_pad / 4; ++i) s4[i] = 256 * s4[i] + tmp[i];
}

// Fills one token's lane tables from the block scales `d`, the per-block code sums `sums` and
// the 4-code sums `s4` of the placed codes (computed only for the layouts that need them).
void fill_lane_tables(const IsaKernels& k, Layout layout, int32_t bias, const int8_t* q_hi,
                      const int8_t* q_lo, const float* d, const int32_t* sums, int64_t n,
                      int64_t n_pad, float* lane_scale, int32_t* lane_init, float* lane_sums,
                      int32_t* s4, int32_t* tmp) {
  const int64_t nb = n / 32;
  switch (layout) {
    case Layout::kPacked16:
      for (int64_t b = 0; b < n_pad / 32; ++b) {
        lane_scale[b] = b < nb ? d[b] : 0.0f;
        lane_init[b] = b < nb ? -bias * sums[b] : 0;
      }
      return;
    case Layout::kQ8_0:
      sum4_codes(k, q_hi, q_lo, n_pad, s4, tmp);
      for (int64_t l = 0; l < n_pad / 4; ++l) lane_init[l] = -128 * s4[l];
      for (int64_t b = 0; b < n_pad / 32; ++b)
        for (int64_t i = 0; i < 8; ++i) lane_scale[8 * b + i] = b < nb ? d[b] : 0.0f;
      return;
    case Layout::kQ4_0:
      sum4_codes(k, q_hi, q_lo, n_pad, s4, tmp);
      for (int64_t g = 0; g < n_pad / 128; ++g)  // lane i of quad g: 4-code sums i and 16 + i
        for (int64_t i = 0; i < 16; ++i) {
          const int64_t b = 4 * g + i / 4;
          lane_scale[16 * g + i] = b < nb ? d[b] : 0.0f;
          lane_init[16 * g + i] = -8 * (s4[32 * g + i] + s4[32 * g + 16 + i]);
        }
      return;
    case Layout::kQ4_G64: {
      const int64_t ng = n / 64;
      sum4_codes(k, q_hi, q_lo, n_pad, s4, tmp);
      for (int64_t p = 0; p < n_pad / 128; ++p)  // lane i of pair p: 4-code sums i and 16 + i
        for (int64_t i = 0; i < 16; ++i) {
          const int64_t g = 2 * p + i / 8;
          const float dg = g < ng ? d[g] : 0.0f;
          lane_scale[16 * p + i] = dg;
          lane_sums[16 * p + i] = dg * static_cast<float>(s4[32 * p + i] + s4[32 * p + 16 + i]);
        }
      return;
    }
    case Layout::kQ4_G128:
    case Layout::kFloat:
      return;
  }
}

}  // namespace

namespace internal {
const IsaKernels* scalar_kernels() { return &kScalarKernels; }
}  // namespace internal

bool has_packed_layout(Format wf) { return wf == Format::kQ4_0 || wf == Format::kQ8_0; }

void pack_rows(Format wf, const void* w, int64_t rows, int64_t n, void* out) {
  SLMC_CHECK(rows >= 0, "[kernels] pack_rows: negative row count ", rows);
  const size_t rb = codec::row_bytes(wf, n);
  const auto* src = static_cast<const uint8_t*>(w);
  auto* dst = static_cast<uint8_t*>(out);
  if (!has_packed_layout(wf)) {
    if (rows > 0) std::memcpy(dst, src, rb * static_cast<size_t>(rows));
    return;
  }
  const codec::FormatInfo& info = codec::format_info(wf);
  for (int64_t r = 0; r < rows; ++r)
    pack_row(src + rb * static_cast<size_t>(r), n / 32, info.block_bytes,
             dst + rb * static_cast<size_t>(r));
}

const char* act_precision_name(ActPrecision p) {
  return p == ActPrecision::kInt8 ? "int8" : "precise";
}

bool act_precision_from_name(const char* name, ActPrecision* out) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "precise") {
    *out = ActPrecision::kPrecise;
  } else if (lower == "int8") {
    *out = ActPrecision::kInt8;
  } else {
    return false;
  }
  return true;
}

ActPrecision default_act_precision() {
  static const ActPrecision p = [] {
    ActPrecision v = ActPrecision::kPrecise;
    const char* env = std::getenv("SLMC_ACTS");
    if (env != nullptr && *env != '\0')
      SLMC_CHECK(act_precision_from_name(env, &v), "SLMC_ACTS=", env, ": expected precise or int8");
    return v;
  }();
  return p;
}

void prepare_acts(Format wf, const float* x, int64_t T, int64_t n, Acts* out, Isa isa,
                  WeightLayout weight_layout, ActPrecision precision, ThreadPool* pool) {
  SLMC_CHECK(out != nullptr, "[kernels] prepare_acts: null output");
  SLMC_CHECK(T >= 0, "[kernels] prepare_acts: negative token count ", T);
  const codec::FormatInfo& info = codec::format_info(wf);
  SLMC_CHECK(codec::row_fits(wf, n), "[kernels] format ", info.name, " needs a multiple of ",
             info.block_size, " columns, got ", n);
  const IsaKernels& k = kernels_for(isa);
  const bool packed = weight_layout == WeightLayout::kPacked && has_packed_layout(wf);
  const Layout layout = packed ? Layout::kPacked16 : layout_of(wf);
  out->T = T;
  out->n = n;
  out->weight_format = wf;
  out->weight_layout = packed ? WeightLayout::kPacked : WeightLayout::kCodec;
  out->precision = precision;
  out->amx_tiles = 0;
  if (layout == Layout::kFloat) {
    out->f32.resize(static_cast<size_t>(T * n));
    if (T > 0) std::memcpy(out->f32.data(), x, static_cast<size_t>(T * n) * sizeof(float));
    out->n_pad = n;
    out->block = 1;
    out->lane_width = 0;
    out->q_stride = 0;
    out->lo_offset = 0;
    return;
  }
  const LayoutGeometry geo = geometry(layout);
  const int64_t n_pad = round_up(n, geo.unit);
  const int64_t nbp = n_pad / geo.block;  // blocks per token, padding included
  const int64_t n_lanes = geo.lane_width ? n_pad / geo.lane_width : 0;
  const bool two = precision == ActPrecision::kPrecise;
  // The 256-byte skew of the precise planes: see Acts::q_stride.
  const int64_t lo_offset = two ? n_pad + 256 : 0;
  const int64_t q_stride = two ? 2 * n_pad + 512 : n_pad;
  out->n_pad = n_pad;
  out->q_stride = q_stride;
  out->lo_offset = lo_offset;
  out->block = geo.block;
  out->lane_width = geo.lane_width;
  out->q8.resize(static_cast<size_t>(T * q_stride));
  out->scale.assign(static_cast<size_t>(T * nbp), 0.0f);
  out->block_sums.assign(static_cast<size_t>(T * nbp), 0.0f);
  out->lane_scale.resize(static_cast<size_t>(T * n_lanes));
  out->lane_init.resize(static_cast<size_t>(T * n_lanes));
  out->lane_sums.resize(static_cast<size_t>(T * n_lanes));

  const int32_t bias = wf == Format::kQ8_0 ? 128 : 8;
  // The AMX tile copy (Acts::amx): padding tokens and blocks stay zero.
  const int64_t planes = two ? 2 : 1;
  const bool amx = isa == Isa::kAmx && packed && T >= kAmxMinTokens;
  if (amx) {
    out->amx_tiles = (T + 15) / 16;
    out->amx.assign(static_cast<size_t>(out->amx_tiles * nbp * 16 * planes * 32), 0);
    out->amx_scale.assign(static_cast<size_t>(out->amx_tiles * nbp * 16), 0.0f);
  } else {
    out->amx.clear();
    out->amx_scale.clear();
  }
  // Tokens are independent: each writes its own rows of every array (and its own rows of the
  // AMX tiles), so ranges of whole 16-token tiles run on the pool's threads.
  auto tokens = [&](int64_t t_begin, int64_t t_end) {
    thread_local std::vector<int8_t> nat_hi, nat_lo;
    thread_local std::vector<int32_t> sums, s4, tmp;
    nat_hi.resize(static_cast<size_t>(n));
    nat_lo.resize(two ? static_cast<size_t>(n) : 0);
    sums.resize(static_cast<size_t>(n / geo.block));
    s4.resize(static_cast<size_t>(n_pad / 4));
    tmp.resize(static_cast<size_t>(n_pad / 4));
    for (int64_t t = t_begin; t < t_end; ++t) {
      float* d = out->scale.data() + t * nbp;
      k.quantize(x + t * n, n, geo.block, nat_hi.data(), two ? nat_lo.data() : nullptr, d,
                 sums.data());
      float* bs = out->block_sums.data() + t * nbp;
      for (int64_t b = 0; b < n / geo.block; ++b) bs[b] = d[b] * static_cast<float>(sums[b]);
      int8_t* q_hi = reinterpret_cast<int8_t*>(out->q8.data()) + t * q_stride;
      int8_t* q_lo = two ? q_hi + lo_offset : nullptr;
      place_codes(layout, nat_hi.data(), n, n_pad, q_hi);
      if (two) {
        place_codes(layout, nat_lo.data(), n, n_pad, q_lo);
        std::memset(q_hi + n_pad, 0, static_cast<size_t>(lo_offset - n_pad));  // the skew gaps
        std::memset(q_lo + n_pad, 0, static_cast<size_t>(q_stride - lo_offset - n_pad));
      }
      fill_lane_tables(k, layout, bias, q_hi, q_lo, d, sums.data(), n, n_pad,
                       out->lane_scale.data() + t * n_lanes, out->lane_init.data() + t * n_lanes,
                       out->lane_sums.data() + t * n_lanes, s4.data(), tmp.data());
      if (amx) {
        const int64_t tile = t / 16, j = t % 16;
        int8_t* a = out->amx.data() + (tile * nbp * 16 + j) * planes * 32;
        float* as = out->amx_scale.data() + tile * nbp * 16 + j;
        for (int64_t b = 0; b < n / 32; ++b) {
          std::memcpy(a + b * 16 * planes * 32, nat_hi.data() + 32 * b, 32);
          if (two) std::memcpy(a + b * 16 * planes * 32 + 32, nat_lo.data() + 32 * b, 32);
          as[b * 16] = d[b];
        }
      }
    }
  };
  if (pool != nullptr && pool->size() > 1 && T >= 32) {
    pool->parallel_for(T, 16, tokens);
  } else {
    tokens(0, T);
  }
}

void gemm_rows(Format wf, const void* w, const Acts& x, float* y, int64_t ldy, int64_t r0,
               int64_t r1, Isa isa) {
  SLMC_CHECK(x.weight_format == wf, "[kernels] activations prepared for ",
             codec::format_info(x.weight_format).name, " used with ", codec::format_info(wf).name,
             " weights");
  SLMC_CHECK(0 <= r0 && r0 <= r1, "[kernels] bad row range [", r0, ", ", r1, ")");
  if (r0 == r1 || x.T == 0) return;
  SLMC_CHECK(x.T == 1 || ldy >= r1, "[kernels] ldy ", ldy, " < row end ", r1);
  const IsaKernels& k = kernels_for(isa);
  GemmArgs a{};
  a.wf = wf;
  a.w = static_cast<const uint8_t*>(w);
  a.row_bytes = codec::row_bytes(wf, x.n);
  a.n = x.n;
  a.x = view_of(x);
  a.y = y;
  a.ldy = ldy;
  a.r0 = r0;
  a.r1 = r1;
  if (x.weight_layout == WeightLayout::kPacked) {
#if defined(__x86_64__)
    if (isa == Isa::kAmx && x.amx_tiles > 0) {
      if (wf == Format::kQ8_0) return internal::amx_kernels()->q8_0_packed(a);
      if (wf == Format::kQ4_0) return internal::amx_kernels()->q4_0_packed(a);
    }
#endif
    if (wf == Format::kQ8_0) return k.q8_0_packed(a);
    if (wf == Format::kQ4_0) return k.q4_0_packed(a);
  }
  switch (wf) {
    case Format::kF32:
      return k.f32(a);
    case Format::kF16:
      return k.f16(a);
    case Format::kBF16:
      return k.bf16(a);
    case Format::kQ8_0:
      return k.q8_0(a);
    case Format::kQ4_0:
      return k.q4_0(a);
    case Format::kQ4_G64:
      return k.q4_g64(a);
    case Format::kQ4_G128:
      return k.q4_g128(a);
    case Format::kQ4_K:
    case Format::kQ5_K:
    case Format::kQ6_K:
    case Format::kQ8_K:
      return k.kquant(a);
  }
}

void dequantize_row(Format wf, const void* w, int64_t n, int64_t r, float* out,
                    WeightLayout layout) {
  SLMC_CHECK(r >= 0, "[kernels] dequantize_row: negative row ", r);
  const size_t rb = codec::row_bytes(wf, n);
  const uint8_t* row = static_cast<const uint8_t*>(w) + rb * static_cast<size_t>(r);
  if (layout == WeightLayout::kPacked && has_packed_layout(wf)) {
    thread_local std::vector<uint8_t> codec_row;
    codec_row.resize(rb);
    unpack_row(row, n / 32, codec::format_info(wf).block_bytes, codec_row.data());
    row = codec_row.data();
  }
  codec::dequantize_row_ref(wf, row, n, out);
}

}  // namespace slmc::runtime
