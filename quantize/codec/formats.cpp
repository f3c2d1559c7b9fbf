#include "quantize/codec/formats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "quantize/codec/kquants.h"

namespace slmc::codec {

namespace {

const std::vector<FormatInfo> kFormats = {
    {Format::kF32, "f32", 1, 4, false, "32-bit float, lossless", 0},
    {Format::kF16, "f16", 1, 2, false, "IEEE half, round to nearest even", 0},
    {Format::kBF16, "bf16", 1, 2, false, "bfloat16, round to nearest even", 0},
    {Format::kQ8_0, "q8_0", 32, 34, true, "ggml Q8_0: int8, 32-weight blocks, fp16 scale", 32},
    {Format::kQ4_0, "q4_0", 32, 18, true, "ggml Q4_0: int4, 32-weight blocks, fp16 scale", 32},
    {Format::kQ4_G64, "q4_g64", 64, 36, true, "int4, 64-weight groups, fp16 scale and zero point",
     64},
    {Format::kQ4_G128, "q4_g128", 128, 68, true,
     "int4, 128-weight groups, fp16 scale and zero point", 128},
    {Format::kQ4_K, "q4_k", 256, 144, true,
     "ggml Q4_K: int4, 256-weight super-blocks of 8 x 32 with 6-bit scales and mins", 32},
    {Format::kQ5_K, "q5_k", 256, 176, true,
     "ggml Q5_K: int5, 256-weight super-blocks of 8 x 32 with 6-bit scales and mins", 32},
    {Format::kQ6_K, "q6_k", 256, 210, true,
     "ggml Q6_K: int6, 256-weight super-blocks of 16 x 16 with 8-bit scales", 16},
    {Format::kQ8_K, "q8_k", 256, 292, true,
     "ggml Q8_K: int8, 256-weight blocks, fp32 scale (ggml's K-quant activations)", 0},
};

void quantize_q8_0(const float* x, int64_t nb, BlockQ8_0* y) {
  for (int64_t b = 0; b < nb; ++b, x += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 32; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void quantize_q4_0(const float* x, int64_t nb, BlockQ4_0* y) {
  for (int64_t b = 0; b < nb; ++b, x += 32) {
    float amax = 0, max = 0;  // the value of largest magnitude, sign kept (ggml)
    for (int j = 0; j < 32; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < 16; ++j) {
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x[j] * id + 8.5f)));
      const uint8_t q1 =
          static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// Min/max asymmetric RTN: d = (max - min) / 15, z = round(-min / d), q = clamp(round(x / d + z)).
template <int G>
void quantize_q4g(const float* x, int64_t nb, BlockQ4G<G>* y) {
  for (int64_t b = 0; b < nb; ++b, x += G) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < G; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    lo = std::min(lo, 0.0f);  // zero stays exactly representable
    hi = std::max(hi, 0.0f);
    const float d = f16_to_f32(f32_to_f16((hi - lo) / 15.0f));  // the scale the decoder will see
    const float id = d ? 1.0f / d : 0.0f;
    const float z = std::min(15.0f, std::max(0.0f, std::roundf(-lo * id)));
    y[b].d = f32_to_f16(d);
    y[b].z = f32_to_f16(z);
    for (int j = 0; j < G / 2; ++j) {
      const int q0 = static_cast<int>(std::min(15.0f, std::max(0.0f, std::roundf(x[j] * id + z))));
      const int q1 =
          static_cast<int>(std::min(15.0f, std::max(0.0f, std::roundf(x[j + G / 2] * id + z))));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

template <int G>
void dequantize_q4g(const BlockQ4G<G>* x, int64_t nb, float* y) {
  for (int64_t b = 0; b < nb; ++b, y += G) {
    const float d = f16_to_f32(x[b].d), z = f16_to_f32(x[b].z);
    for (int j = 0; j < G / 2; ++j) {
      y[j] = d * (static_cast<float>(x[b].qs[j] & 0x0f) - z);
      y[j + G / 2] = d * (static_cast<float>(x[b].qs[j] >> 4) - z);
    }
  }
}

}  // namespace

const std::vector<FormatInfo>& all_formats() { return kFormats; }

const FormatInfo& format_info(Format f) {
  for (const FormatInfo& i : kFormats)
    if (i.id == f) return i;
  fail("unknown weight format id ", static_cast<uint32_t>(f));
}

bool format_from_id(uint32_t id, Format* out) {
  for (const FormatInfo& i : kFormats)
    if (static_cast<uint32_t>(i.id) == id) {
      *out = i.id;
      return true;
    }
  return false;
}

bool format_from_name(const std::string& name, Format* out) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const FormatInfo& i : kFormats)
    if (lower == i.name) {
      *out = i.id;
      return true;
    }
  return false;
}

std::string format_names() {
  std::string s;
  for (const FormatInfo& i : kFormats) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

bool row_fits(Format f, int64_t n_cols) {
  return n_cols > 0 && n_cols % format_info(f).block_size == 0;
}

size_t row_bytes(Format f, int64_t n_cols) {
  const FormatInfo& i = format_info(f);
  SLMC_CHECK(row_fits(f, n_cols), "format ", i.name, " needs rows of a multiple of ",
             i.block_size, " weights, got ", n_cols);
  return static_cast<size_t>(n_cols / i.block_size) * static_cast<size_t>(i.block_bytes);
}

void quantize_row_ref(Format f, const float* x, int64_t n, void* out) {
  const int64_t nb = static_cast<int64_t>(row_bytes(f, n)) / format_info(f).block_bytes;
  switch (f) {
    case Format::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * 4);
      return;
    case Format::kF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = f32_to_f16(x[i]);
      return;
    case Format::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(out)[i] = f32_to_bf16(x[i]);
      return;
    case Format::kQ8_0:
      return quantize_q8_0(x, nb, static_cast<BlockQ8_0*>(out));
    case Format::kQ4_0:
      return quantize_q4_0(x, nb, static_cast<BlockQ4_0*>(out));
    case Format::kQ4_G64:
      return quantize_q4g<64>(x, nb, static_cast<BlockQ4G64*>(out));
    case Format::kQ4_G128:
      return quantize_q4g<128>(x, nb, static_cast<BlockQ4G128*>(out));
    case Format::kQ4_K:
      return kquants::quantize_q4_k_ref(x, nb, static_cast<BlockQ4_K*>(out));
    case Format::kQ5_K:
      return kquants::quantize_q5_k_ref(x, nb, static_cast<BlockQ5_K*>(out));
    case Format::kQ6_K:
      return kquants::quantize_q6_k_ref(x, nb, static_cast<BlockQ6_K*>(out));
    case Format::kQ8_K:
      return kquants::quantize_q8_k_ref(x, nb, static_cast<BlockQ8_K*>(out));
  }
}

bool is_k_quant(Format f) {
  return f == Format::kQ4_K || f == Format::kQ5_K || f == Format::kQ6_K || f == Format::kQ8_K;
}

void quantize_row_weighted_ref(Format f, const float* x, const float* weights, int64_t n,
                               void* out) {
  const int64_t nb = static_cast<int64_t>(row_bytes(f, n)) / format_info(f).block_bytes;
  SLMC_CHECK(weights != nullptr, "quantize_row_weighted_ref: no weights");
  switch (f) {
    case Format::kQ4_K:
      return kquants::quantize_q4_k_weighted(x, nb, weights, static_cast<BlockQ4_K*>(out));
    case Format::kQ5_K:
      return kquants::quantize_q5_k_weighted(x, nb, weights, static_cast<BlockQ5_K*>(out));
    case Format::kQ6_K:
      return kquants::quantize_q6_k_weighted(x, nb, weights, static_cast<BlockQ6_K*>(out));
    default:
      fail("format ", format_info(f).name, " has no importance-weighted quantizer");
  }
}

void dequantize_row_ref(Format f, const void* in, int64_t n, float* y) {
  const int64_t nb = static_cast<int64_t>(row_bytes(f, n)) / format_info(f).block_bytes;
  switch (f) {
    case Format::kF32:
      std::memcpy(y, in, static_cast<size_t>(n) * 4);
      return;
    case Format::kF16:
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(static_cast<const uint16_t*>(in)[i]);
      return;
    case Format::kBF16:
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(static_cast<const uint16_t*>(in)[i]);
      return;
    case Format::kQ8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(in);
      for (int64_t k = 0; k < nb; ++k) {
        const float d = f16_to_f32(b[k].d);
        for (int j = 0; j < 32; ++j) y[k * 32 + j] = d * static_cast<float>(b[k].qs[j]);
      }
      return;
    }
    case Format::kQ4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(in);
      for (int64_t k = 0; k < nb; ++k) {
        const float d = f16_to_f32(b[k].d);
        for (int j = 0; j < 16; ++j) {
          y[k * 32 + j] = d * static_cast<float>((b[k].qs[j] & 0x0f) - 8);
          y[k * 32 + j + 16] = d * static_cast<float>((b[k].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    case Format::kQ4_G64:
      return dequantize_q4g<64>(static_cast<const BlockQ4G64*>(in), nb, y);
    case Format::kQ4_G128:
      return dequantize_q4g<128>(static_cast<const BlockQ4G128*>(in), nb, y);
    case Format::kQ4_K:
      return kquants::dequantize_q4_k(static_cast<const BlockQ4_K*>(in), nb, y);
    case Format::kQ5_K:
      return kquants::dequantize_q5_k(static_cast<const BlockQ5_K*>(in), nb, y);
    case Format::kQ6_K:
      return kquants::dequantize_q6_k(static_cast<const BlockQ6_K*>(in), nb, y);
    case Format::kQ8_K:
      return kquants::dequantize_q8_k(static_cast<const BlockQ8_K*>(in), nb, y);
  }
}

std::vector<uint8_t> quantize_ref(Format f, const float* x, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(f, cols);
  std::vector<uint8_t> out(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) quantize_row_ref(f, x + r * cols, cols, out.data() + rb * static_cast<size_t>(r));
  return out;
}

std::vector<float> dequantize_ref(Format f, const uint8_t* bytes, int64_t rows, int64_t cols) {
  const size_t rb = row_bytes(f, cols);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row_ref(f, bytes + static_cast<size_t>(r) * rb, cols, out.data() + r * cols);
  return out;
}

int Grid::code(float x) const {
  if (d == 0.0f) return std::max(qmin, std::min(qmax, static_cast<int>(std::lround(z))));
  const float q = std::nearbyint((x + m) / d + z);  // m = 0: exactly x / d + z
  if (!(q >= static_cast<float>(qmin))) return qmin;  // also NaN
  if (q > static_cast<float>(qmax)) return qmax;
  return static_cast<int>(q);
}

bool has_grid(Format f) {
  return f == Format::kQ8_0 || f == Format::kQ4_0 || f == Format::kQ4_G64 ||
         f == Format::kQ4_G128 || f == Format::kQ4_K || f == Format::kQ5_K || f == Format::kQ6_K;
}

namespace {

// The sub-block grids a stored Q4_K / Q5_K / Q6_K super-block decodes with.
void grids_of_k4(const uint8_t* scales, uint16_t d16, uint16_t dmin16, int qmax, Grid* grids) {
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mc;
    kquants::get_scale_min_k4(j, scales, &sc, &mc);
    Grid& g = grids[j];
    g = Grid{};
    g.d = f16_to_f32(d16) * sc;
    g.m = f16_to_f32(dmin16) * mc;
    g.qmin = 0;
    g.qmax = qmax;
    g.kd = d16;
    g.kdmin = dmin16;
    g.ksc = sc;
    g.kmin = mc;
  }
}

void grids_of_q6_k(const BlockQ6_K& b, Grid* grids) {
  for (int j = 0; j < 16; ++j) {
    Grid& g = grids[j];
    g = Grid{};
    g.d = f16_to_f32(b.d) * b.scales[j];
    g.z = 32;
    g.qmin = 0;
    g.qmax = 63;
    g.kd = b.d;
    g.ksc = b.scales[j];
  }
}

}  // namespace

void choose_grids(Format f, const float* x, const float* weights, Grid* grids) {
  const int bs = format_info(f).block_size;
  auto quantize_block = [&](void* blk) {
    if (weights)
      quantize_row_weighted_ref(f, x, weights, bs, blk);
    else
      quantize_row_ref(f, x, bs, blk);
  };
  switch (f) {
    case Format::kQ4_K: {
      BlockQ4_K b;
      quantize_block(&b);
      return grids_of_k4(b.scales, b.d, b.dmin, 15, grids);
    }
    case Format::kQ5_K: {
      BlockQ5_K b;
      quantize_block(&b);
      return grids_of_k4(b.scales, b.d, b.dmin, 31, grids);
    }
    case Format::kQ6_K: {
      BlockQ6_K b;
      quantize_block(&b);
      return grids_of_q6_k(b, grids);
    }
    default:
      grids[0] = choose_grid(f, x);
  }
}

Grid choose_grid(Format f, const float* x, float scale, bool symmetric, int64_t n) {
  if (n <= 0) n = format_info(f).block_size;
  Grid g;
  // The value of largest magnitude / -8, zero point 8: q4_0's grid (ggml), the symmetric q4_g*.
  auto int4_symmetric = [&] {
    float amax = 0, max = 0;
    for (int64_t j = 0; j < n; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    g.d = f16_to_f32(f32_to_f16(max * scale / -8.0f));
    g.z = 8;
    g.qmin = 0;
    g.qmax = 15;
    return g;
  };
  switch (f) {
    case Format::kQ8_0: {
      float amax = 0;
      for (int64_t j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
      g.d = f16_to_f32(f32_to_f16(amax * scale / 127.0f));
      g.qmin = -127;
      g.qmax = 127;
      return g;
    }
    case Format::kQ4_0:
      return int4_symmetric();
    case Format::kQ4_G64:
    case Format::kQ4_G128: {
      if (symmetric) return int4_symmetric();
      float lo = 0, hi = 0;  // zero stays representable
      for (int64_t j = 0; j < n; ++j) {
        lo = std::min(lo, x[j]);
        hi = std::max(hi, x[j]);
      }
      lo *= scale;
      hi *= scale;
      g.d = f16_to_f32(f32_to_f16((hi - lo) / 15.0f));
      g.z = g.d != 0.0f ? std::min(15.0f, std::max(0.0f, std::roundf(-lo / g.d))) : 0.0f;
      g.qmin = 0;
      g.qmax = 15;
      return g;
    }
    case Format::kQ4_K:
    case Format::kQ5_K:
    case Format::kQ6_K:
      fail("format ", format_info(f).name,
           " has one grid per sub-block with shared super-block scales: use choose_grids");
    default:
      fail("format ", format_info(f).name, " has no integer grid");
  }
}

void pack_row(Format f, const int* codes, const Grid* grids, int64_t n, void* out) {
  const int bs = format_info(f).block_size;
  const int64_t nb = static_cast<int64_t>(row_bytes(f, n)) / format_info(f).block_bytes;
  auto check = [&](int64_t i, const Grid& g) {
    SLMC_CHECK(codes[i] >= g.qmin && codes[i] <= g.qmax, "pack_row: code ", codes[i],
               " of weight ", i, " outside [", g.qmin, ", ", g.qmax, "]");
  };
  switch (f) {
    case Format::kQ8_0: {
      auto* y = static_cast<BlockQ8_0*>(out);
      for (int64_t b = 0; b < nb; ++b) {
        y[b].d = f32_to_f16(grids[b].d);
        for (int j = 0; j < 32; ++j) {
          check(b * 32 + j, grids[b]);
          y[b].qs[j] = static_cast<int8_t>(codes[b * 32 + j]);
        }
      }
      return;
    }
    case Format::kQ4_0: {
      auto* y = static_cast<BlockQ4_0*>(out);
      for (int64_t b = 0; b < nb; ++b) {
        SLMC_CHECK(grids[b].z == 8.0f, "pack_row: q4_0 needs zero point 8");
        y[b].d = f32_to_f16(grids[b].d);
        for (int j = 0; j < 16; ++j) {
          check(b * 32 + j, grids[b]);
          check(b * 32 + j + 16, grids[b]);
          y[b].qs[j] = static_cast<uint8_t>(codes[b * 32 + j] | (codes[b * 32 + j + 16] << 4));
        }
      }
      return;
    }
    case Format::kQ4_G64:
    case Format::kQ4_G128: {
      const int half = bs / 2;
      uint8_t* base = static_cast<uint8_t*>(out);
      const int bb = format_info(f).block_bytes;
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* blk = base + b * bb;
        const uint16_t d = f32_to_f16(grids[b].d), z = f32_to_f16(grids[b].z);
        std::memcpy(blk, &d, 2);
        std::memcpy(blk + 2, &z, 2);
        for (int j = 0; j < half; ++j) {
          check(b * bs + j, grids[b]);
          check(b * bs + j + half, grids[b]);
          blk[4 + j] = static_cast<uint8_t>(codes[b * bs + j] | (codes[b * bs + j + half] << 4));
        }
      }
      return;
    }
    case Format::kQ4_K:
    case Format::kQ5_K: {
      const bool q5 = f == Format::kQ5_K;
      uint8_t* base = static_cast<uint8_t*>(out);
      for (int64_t b = 0; b < nb; ++b) {
        const Grid* g = grids + b * 8;
        const int* c = codes + b * kquants::kQK;
        uint8_t ls[8], lm[8];
        uint8_t L[kquants::kQK];
        for (int j = 0; j < 8; ++j) {
          SLMC_CHECK(g[j].kd == g[0].kd && g[j].kdmin == g[0].kdmin && g[j].ksc >= 0 &&
                         g[j].ksc < 64 && g[j].kmin >= 0 && g[j].kmin < 64,
                     "pack_row: ", format_info(f).name, " super-block ", b,
                     " has sub-block grids with different super-block scales or codes out of range");
          ls[j] = static_cast<uint8_t>(g[j].ksc);
          lm[j] = static_cast<uint8_t>(g[j].kmin);
          for (int l = 0; l < 32; ++l) {
            check(b * kquants::kQK + 32 * j + l, g[j]);
            L[32 * j + l] = static_cast<uint8_t>(c[32 * j + l]);
          }
        }
        // The same tails as ggml's quantizers (kquants.cpp), on the chosen codes.
        if (q5) {
          auto* y = reinterpret_cast<BlockQ5_K*>(base) + b;
          y->d = g[0].kd;
          y->dmin = g[0].kdmin;
          kquants::set_scale_min_k4(ls, lm, y->scales);
          std::memset(y->qh, 0, sizeof(y->qh));
          for (int n0 = 0, sh = 0; n0 < kquants::kQK; n0 += 64, sh += 2)
            for (int l = 0; l < 32; ++l) {
              const int l1 = L[n0 + l], l2 = L[n0 + l + 32];
              y->qh[l] = static_cast<uint8_t>(y->qh[l] | ((l1 >> 4) << sh) | ((l2 >> 4) << (sh + 1)));
              y->qs[n0 / 2 + l] = static_cast<uint8_t>((l1 & 15) | ((l2 & 15) << 4));
            }
        } else {
          auto* y = reinterpret_cast<BlockQ4_K*>(base) + b;
          y->d = g[0].kd;
          y->dmin = g[0].kdmin;
          kquants::set_scale_min_k4(ls, lm, y->scales);
          for (int n0 = 0; n0 < kquants::kQK; n0 += 64)
            for (int l = 0; l < 32; ++l)
              y->qs[n0 / 2 + l] = static_cast<uint8_t>(L[n0 + l] | (L[n0 + l + 32] << 4));
        }
      }
      return;
    }
    case Format::kQ6_K: {
      auto* y = static_cast<BlockQ6_K*>(out);
      for (int64_t b = 0; b < nb; ++b) {
        const Grid* g = grids + b * 16;
        const int* c = codes + b * kquants::kQK;
        y[b].d = g[0].kd;
        uint8_t L[kquants::kQK];
        for (int j = 0; j < 16; ++j) {
          SLMC_CHECK(g[j].kd == g[0].kd && g[j].ksc >= -128 && g[j].ksc <= 127 && g[j].z == 32.0f,
                     "pack_row: q6_k super-block ", b,
                     " has sub-block grids with different super-block scales or codes out of range");
          y[b].scales[j] = static_cast<int8_t>(g[j].ksc);
          for (int l = 0; l < 16; ++l) {
            check(b * kquants::kQK + 16 * j + l, g[j]);
            L[16 * j + l] = static_cast<uint8_t>(c[16 * j + l]);
          }
        }
        for (int h = 0; h < 2; ++h)
          for (int l = 0; l < 32; ++l) {
            const uint8_t* q = L + 128 * h + l;
            y[b].ql[64 * h + l] = static_cast<uint8_t>((q[0] & 0xF) | ((q[64] & 0xF) << 4));
            y[b].ql[64 * h + 32 + l] = static_cast<uint8_t>((q[32] & 0xF) | ((q[96] & 0xF) << 4));
            y[b].qh[32 * h + l] = static_cast<uint8_t>((q[0] >> 4) | ((q[32] >> 4) << 2) |
                                                       ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
          }
      }
      return;
    }
    default:
      fail("format ", format_info(f).name, " has no integer grid");
  }
}

Distortion measure_distortion(const float* w, const float* q, int64_t n) {
  Distortion r;
  r.n = n;
  double num = 0, den = 0;
  int64_t nonzero = 0, zeroed = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = static_cast<double>(w[i]) - q[i];
    num += e * e;
    den += static_cast<double>(w[i]) * w[i];
    r.max_abs = std::max(r.max_abs, std::fabs(e));
    if (w[i] != 0.0f) {
      ++nonzero;
      if (q[i] == 0.0f) ++zeroed;
    }
  }
  r.rel_l2 = den > 0 ? std::sqrt(num / den) : 0.0;
  r.zero_frac = nonzero ? static_cast<double>(zeroed) / static_cast<double>(nonzero) : 0.0;
  r.snr_db = den > 0 ? (num > 0 ? 10.0 * std::log10(den / num) : INFINITY) : 0.0;
  return r;
}

}  // namespace slmc::codec
