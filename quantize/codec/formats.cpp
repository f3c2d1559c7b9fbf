#include "quantize/codec/formats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "compress/core/error.h"
#include "compress/core/float16.h"

namespace slmc::codec {

namespace {

const std::vector<FormatInfo> kFormats = {
    {Format::kF32, "f32", 1, 4, false, "32-bit float, lossless"},
    {Format::kF16, "f16", 1, 2, false, "IEEE half, round to nearest even"},
    {Format::kBF16, "bf16", 1, 2, false, "bfloat16, round to nearest even"},
    {Format::kQ8_0, "q8_0", 32, 34, true, "ggml Q8_0: int8, 32-weight blocks, fp16 scale"},
    {Format::kQ4_0, "q4_0", 32, 18, true, "ggml Q4_0: int4, 32-weight blocks, fp16 scale"},
    {Format::kQ4_G64, "q4_g64", 64, 36, true, "int4, 64-weight groups, fp16 scale and zero point"},
    {Format::kQ4_G128, "q4_g128", 128, 68, true,
     "int4, 128-weight groups, fp16 scale and zero point"},
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
  const float q = std::nearbyint(x / d + z);
  if (!(q >= static_cast<float>(qmin))) return qmin;  // also NaN
  if (q > static_cast<float>(qmax)) return qmax;
  return static_cast<int>(q);
}

bool has_grid(Format f) {
  return f == Format::kQ8_0 || f == Format::kQ4_0 || f == Format::kQ4_G64 || f == Format::kQ4_G128;
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
