// Matmul kernels against "dequantize with the _ref codec, then a dense fp64 dot", for every weight
// format on every ISA this CPU has (and scalar), both activation precisions, over awkward shapes,
// with the tolerance derived from the format next to each check. Also: SIMD == scalar on the same
// quantized activations, prepare_acts gives the same bytes on every ISA, every weight and
// activation code value gives exact dots, and the activation quantizer meets its error bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "export/runtime/kernels.h"
#include "export/runtime/thread_pool.h"

namespace slmc::runtime {
namespace {

using codec::Format;

constexpr double kU = 1.0 / (1 << 24);  // fp32 unit roundoff
// fp32 rounding of a kernel that accumulates m terms (products, per-block scalings and the
// final reductions included): |fl(sum) - sum| <= gamma_m * sum |term|, gamma_m = m u / (1 - m u).
// The kernels sum at most n terms per output plus ~32 reduction and scaling steps.
double gamma_for(int64_t n) {
  const double m = static_cast<double>(n + 32);
  return m * kU / (1 - m * kU);
}
// Activation quantization error per value, in units of the block scale d_a (Acts::scale):
// int8: |x - d_a q| <= d_a / 2, loosened by the rounding of x * (1 / d_a) before it is rounded to
// the nearest code (2 ulp of a value below 128: 1.5e-5).
constexpr double kActHalfStep = 0.5 + 1e-4;
// Precise: d_a is 256x smaller, and the same 2 ulp of x * (1 / d1) are 256 * 1.5e-5 = 0.0039 <
// 2^-8 of d_a: |x - d_a c| <= d_a (1/2 + 2^-8). Within 1/512 of a half-integer x / d1 the
// residual code would be +-128 and is clamped to 127, up to a full step: d_a (1 + 2^-8).
constexpr double kPreciseTypicalStep = 0.5 + 1.0 / 256;
constexpr double kPreciseStep = 1.0 + 1.0 / 256;

double act_step(ActPrecision p) {
  return p == ActPrecision::kPrecise ? kPreciseStep : kActHalfStep;
}

const int64_t kRows[] = {1, 3, 17};
const int64_t kTokens[] = {1, 2, 7, 8, 9, 128};
// Isa::kAmx runs its own kernels from kAmxMinTokens (12) tokens on packed Q4_0 / Q8_0: also
// check the token counts around that threshold and its 16-token tiles, and rows beyond one tile.
const int64_t kAmxTokens[] = {1, 8, 11, 12, 15, 16, 17, 33, 128};
const int64_t kAmxRows[] = {1, 3, 17, 33};

bool amx_kernels_for(Isa isa, codec::Format f, WeightLayout layout) {
  return isa == Isa::kAmx && layout == WeightLayout::kPacked && has_packed_layout(f);
}

std::vector<int64_t> cols_for(Format f) {
  if (!codec::format_info(f).quantized) return {1, 7, 31, 32, 33, 64, 127, 128, 4096, 4097};
  if (codec::is_k_quant(f)) return {256, 768, 4352};  // 1, 3 and 17 super-blocks
  std::vector<int64_t> out;
  for (int64_t n : {32, 64, 96, 128, 160, 192, 256, 320, 384, 4064, 4096, 4128, 4160, 4224})
    if (codec::row_fits(f, n)) out.push_back(n);
  return out;
}

std::vector<Isa> isas_to_test() {
  std::vector<Isa> out = {Isa::kScalar};
  if (static_cast<int>(hardware_isa()) >= static_cast<int>(Isa::kAvx2)) out.push_back(Isa::kAvx2);
  if (static_cast<int>(hardware_isa()) >= static_cast<int>(Isa::kAvx512))
    out.push_back(Isa::kAvx512);
  if (hardware_isa() == Isa::kAmx) out.push_back(Isa::kAmx);
  return out;
}

// Gaussian values with outliers every 61st entry; `zero_block` zeroes the first 32 (d = 0 paths).
std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed, float scale,
                                 bool zero_block) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = normal(rng) * (i % 61 == 0 ? 8.0f : 1.0f);
  if (zero_block)
    for (int64_t j = 0; j < std::min<int64_t>(32, cols); ++j) x[static_cast<size_t>(j)] = 0.0f;
  return x;
}

// The weights as the kernels see them: codec bytes, their fp64 decoding, and per element the
// magnitude bound |d_w * q| of what the kernel multiplies (differs from |w| by the zero point).
struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<double> w;    // (rows, cols) dequantized with the _ref codec
  std::vector<double> mag;  // (rows, cols) bound on |d_w * code| the kernel accumulates
};

// `layout` kPacked: the bytes handed to the kernels are pack_rows() of the codec bytes.
Weights make_weights(Format f, int64_t rows, int64_t cols, uint32_t seed,
                     WeightLayout layout = WeightLayout::kCodec) {
  Weights out;
  const std::vector<float> x = random_matrix(rows, cols, seed, 0.05f, true);
  out.bytes = codec::quantize_ref(f, x.data(), rows, cols);
  const size_t rb = codec::row_bytes(f, cols);
  std::vector<float> row(static_cast<size_t>(cols));
  const codec::FormatInfo& info = codec::format_info(f);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = out.bytes.data() + rb * static_cast<size_t>(r);
    codec::dequantize_row_ref(f, src, cols, row.data());
    for (int64_t j = 0; j < cols; ++j) {
      const double w = row[static_cast<size_t>(j)];
      double mag = std::fabs(w);
      if (f == Format::kQ4_G64 || f == Format::kQ4_G128) {  // |d q| <= |d (q - z)| + |d z|
        const uint8_t* blk = src + (j / info.block_size) * info.block_bytes;
        uint16_t d, z;
        std::memcpy(&d, blk, 2);
        std::memcpy(&z, blk + 2, 2);
        mag += std::fabs(static_cast<double>(f16_to_f32(d)) * f16_to_f32(z));
      }
      out.w.push_back(w);
      out.mag.push_back(mag);
    }
  }
  if (layout == WeightLayout::kPacked) {
    std::vector<uint8_t> packed(out.bytes.size());
    pack_rows(f, out.bytes.data(), rows, cols, packed.data());
    out.bytes = std::move(packed);
  }
  return out;
}

// Reference y = W x in fp64 and the tolerance of each output: activation quantization error
// (integer formats) + gamma * (sum of the magnitudes the kernel accumulates).
struct Expected {
  std::vector<double> y, tol, mag;  // (T, rows)
};

Expected reference(Format f, const Weights& w, int64_t rows, int64_t cols,
                   const std::vector<float>& x, int64_t T, const Acts& acts) {
  Expected e;
  // Integer activations carry a quantization error; the K-quants take fp32 activations.
  const bool quantized = acts.block > 1;
  const double step = act_step(acts.precision);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double y = 0, quant = 0, mag = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double wj = w.w[static_cast<size_t>(r * cols + j)];
        const double xj = x[static_cast<size_t>(t * cols + j)];
        y += wj * xj;
        if (quantized) {
          const double da =
              acts.scale[static_cast<size_t>(t * (acts.n_pad / acts.block) + j / acts.block)];
          quant += std::fabs(wj) * da * step;
          mag += w.mag[static_cast<size_t>(r * cols + j)] * (std::fabs(xj) + da);
        } else {
          mag += std::fabs(wj * xj);
        }
      }
      e.y.push_back(y);
      e.mag.push_back(mag);
      e.tol.push_back(quant + gamma_for(cols) * mag);
    }
  return e;
}

void expect_same_acts(const Acts& a, const Acts& b, const std::string& what) {
  EXPECT_EQ(a.n_pad, b.n_pad) << what;
  EXPECT_EQ(a.q_stride, b.q_stride) << what;
  EXPECT_EQ(a.lo_offset, b.lo_offset) << what;
  EXPECT_EQ(a.q8, b.q8) << what;
  EXPECT_EQ(a.scale, b.scale) << what;
  EXPECT_EQ(a.block_sums, b.block_sums) << what;
  EXPECT_EQ(a.lane_scale, b.lane_scale) << what;
  EXPECT_EQ(a.lane_init, b.lane_init) << what;
  EXPECT_EQ(a.lane_sums, b.lane_sums) << what;
  EXPECT_EQ(a.f32, b.f32) << what;
}

constexpr float kUntouched = 12345.0f;

// Runs rows [r0, r1) into a (T, ldy) buffer and checks the rows outside were not written.
std::vector<float> run(Format f, const Weights& w, const Acts& acts, int64_t rows, int64_t r0,
                       int64_t r1, Isa isa) {
  const int64_t ldy = rows + 3;
  std::vector<float> y(static_cast<size_t>(acts.T * ldy), kUntouched);
  gemm_rows(f, w.bytes.data(), acts, y.data(), ldy, r0, r1, isa);
  for (int64_t t = 0; t < acts.T; ++t)
    for (int64_t r = 0; r < ldy; ++r)
      if (r < r0 || r >= r1) {
        EXPECT_EQ(y[static_cast<size_t>(t * ldy + r)], kUntouched) << "wrote row " << r;
      }
  return y;
}

using KernelParam = std::tuple<Format, Isa, WeightLayout, ActPrecision>;

class KernelTest : public ::testing::TestWithParam<KernelParam> {};

TEST_P(KernelTest, MatchesDequantizedDenseDot) {
  const Format f = std::get<0>(GetParam());
  const Isa isa = std::get<1>(GetParam());
  const WeightLayout layout = std::get<2>(GetParam());
  const ActPrecision prec = std::get<3>(GetParam());
  const bool amx = amx_kernels_for(isa, f, layout);
  const int64_t max_rows = amx ? 33 : 17;
  const std::vector<int64_t> tokens = amx ? std::vector<int64_t>(std::begin(kAmxTokens),
                                                                 std::end(kAmxTokens))
                                          : std::vector<int64_t>(std::begin(kTokens),
                                                                 std::end(kTokens));
  const std::vector<int64_t> row_counts =
      amx ? std::vector<int64_t>(std::begin(kAmxRows), std::end(kAmxRows))
          : std::vector<int64_t>(std::begin(kRows), std::end(kRows));
  int checked = 0;
  for (int64_t cols : cols_for(f)) {
    const Weights w = make_weights(f, max_rows, cols, static_cast<uint32_t>(cols), layout);
    for (int64_t T : tokens) {
      if (T == 128 && cols > 4096) continue;  // keeps the suite quick; 4096 covers T = 128
      const std::vector<float> x =
          random_matrix(T, cols, static_cast<uint32_t>(1000 + T), 1.0f, T > 1);
      Acts acts, scalar_acts;
      prepare_acts(f, x.data(), T, cols, &acts, isa, layout, prec);
      prepare_acts(f, x.data(), T, cols, &scalar_acts, Isa::kScalar, layout, prec);
      ASSERT_EQ(acts.weight_layout, layout);
      expect_same_acts(acts, scalar_acts, "prepare_acts differs from scalar");
      // The AMX tile copy exactly when the AMX kernels will run.
      ASSERT_EQ(acts.amx_tiles > 0, amx && T >= kAmxMinTokens);
      for (int64_t rows : row_counts) {
        SCOPED_TRACE(std::string(codec::format_info(f).name) + " " + isa_name(isa) + " " +
                     act_precision_name(prec) + " cols=" + std::to_string(cols) +
                     " T=" + std::to_string(T) + " rows=" + std::to_string(rows));
        const Expected e = reference(f, w, rows, cols, x, T, acts);
        const std::vector<float> y = run(f, w, acts, rows, 0, rows, isa);
        const std::vector<float> ys = run(f, w, scalar_acts, rows, 0, rows, Isa::kScalar);
        // A row range that does not start at 0 gives the same values for its rows.
        const int64_t r0 = rows / 3 + (rows > 1), r1 = rows > 3 ? rows - 1 : rows;
        const std::vector<float> yr = run(f, w, acts, rows, r0, r1, isa);
        const int64_t ldy = rows + 3;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            const size_t i = static_cast<size_t>(t * rows + r),
                         o = static_cast<size_t>(t * ldy + r);
            // Tolerance: activation quantization (integer formats, act_step) + fp32 accumulation.
            ASSERT_NEAR(y[o], e.y[i], e.tol[i]) << "t=" << t << " r=" << r;
            // SIMD vs scalar on identical codes: both within gamma * mag of the exact value.
            ASSERT_NEAR(y[o], ys[o], 2 * gamma_for(cols) * e.mag[i]) << "t=" << t << " r=" << r;
            if (r >= r0 && r < r1) {
              ASSERT_NEAR(yr[o], y[o], 2 * gamma_for(cols) * e.mag[i]) << "t=" << t << " r=" << r;
            }
            ++checked;
          }
      }
    }
  }
  EXPECT_GT(checked, 0);
}

std::string param_name(const ::testing::TestParamInfo<KernelParam>& info) {
  return std::string(codec::format_info(std::get<0>(info.param)).name) +
         (std::get<2>(info.param) == WeightLayout::kPacked ? "_packed_" : "_") +
         isa_name(std::get<1>(info.param)) +
         (std::get<3>(info.param) == ActPrecision::kInt8 ? "_int8" : "");
}

// Precisions that matter for format f: float formats take fp32 activations either way.
std::vector<ActPrecision> precisions_for(Format f) {
  if (!codec::format_info(f).quantized) return {ActPrecision::kPrecise};
  return {ActPrecision::kPrecise, ActPrecision::kInt8};
}

std::vector<WeightLayout> layouts_for(Format f) {
  if (has_packed_layout(f)) return {WeightLayout::kCodec, WeightLayout::kPacked};
  return {WeightLayout::kCodec};
}

std::vector<KernelParam> all_params() {
  std::vector<KernelParam> out;
  for (const codec::FormatInfo& i : codec::all_formats())
    for (Isa isa : isas_to_test())
      for (WeightLayout layout : layouts_for(i.id))
        for (ActPrecision prec : precisions_for(i.id)) out.emplace_back(i.id, isa, layout, prec);
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, KernelTest, ::testing::ValuesIn(all_params()), param_name);

// Integer kernels on a row that quantizes exactly: with activations on the int8 grid of their
// block scale and weights on their format's grid, every path must give the exact dot product up
// to fp32 rounding (no activation-quantization term in the tolerance).
TEST(KernelExact, GridValuesGiveExactDots) {
  const int64_t n = 256;
  for (Format f : {Format::kQ8_0, Format::kQ4_0, Format::kQ4_G64, Format::kQ4_G128}) {
    std::vector<float> wv(n), x(n);
    for (int64_t j = 0; j < n; ++j) {
      wv[j] = static_cast<float>(j % 16) * 0.25f - 2.0f;  // on every 4-bit grid: d = 0.25
      x[j] = static_cast<float>((j * 37) % 255 - 127) / 64.0f;
    }
    for (int64_t b = 0; b < n; b += 32) x[b] = 127.0f / 64.0f;  // d_a = 1/64 in every block
    const std::vector<uint8_t> bytes = codec::quantize_ref(f, wv.data(), 1, n);
    std::vector<float> wd(n);
    codec::dequantize_row_ref(f, bytes.data(), n, wd.data());
    double exact = 0, mag = 0;
    for (int64_t j = 0; j < n; ++j) {
      exact += static_cast<double>(wd[j]) * x[j];
      mag += std::fabs(static_cast<double>(wd[j]) * x[j]) + 2.0 * std::fabs(x[j]);
    }
    for (Isa isa : isas_to_test())
      for (ActPrecision prec : {ActPrecision::kPrecise, ActPrecision::kInt8}) {
        Acts acts;
        prepare_acts(f, x.data(), 1, n, &acts, isa, WeightLayout::kCodec, prec);
        float y = 0;
        gemm_rows(f, bytes.data(), acts, &y, 1, 0, 1, isa);
        EXPECT_NEAR(y, exact, gamma_for(n) * mag)
            << codec::format_info(f).name << " " << isa_name(isa) << " "
            << act_precision_name(prec);
      }
  }
}

// ---- every code value ------------------------------------------------------------------------

// Codec bytes of `rows` x n weights whose codes are chosen one by one: row 0 cycles through every
// code of the format (Q8_0: -127..127, 4-bit: 0..15), row 1 holds the largest code everywhere,
// row 2 the smallest. Scales are powers of two (and q4_g zero points integers), so the weights
// and their products with grid activations are exact in fp32 and fp64.
std::vector<uint8_t> code_by_code_weights(Format f, int64_t rows, int64_t n) {
  const codec::FormatInfo& info = codec::format_info(f);
  const int64_t bs = info.block_size, nb = n / bs;
  std::vector<uint8_t> bytes(codec::row_bytes(f, n) * static_cast<size_t>(rows));
  uint8_t* p = bytes.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b, p += info.block_bytes) {
      const uint16_t d = f32_to_f16(std::ldexp(1.0f, -7 - static_cast<int>(b % 3)));
      auto code = [&](int64_t j) -> int {  // code of weight j of block b
        const int64_t k = b * bs + j;
        if (f == Format::kQ8_0)
          return r == 0 ? static_cast<int>((7 * k) % 255) - 127 : r == 1 ? 127 : -127;
        return r == 0 ? static_cast<int>((5 * k + b) % 16) : r == 1 ? 15 : 0;
      };
      std::memcpy(p, &d, 2);
      if (f == Format::kQ8_0) {
        for (int64_t j = 0; j < 32; ++j)
          p[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(code(j)));
      } else if (f == Format::kQ4_0) {
        for (int64_t j = 0; j < 16; ++j)
          p[2 + j] = static_cast<uint8_t>(code(j) | code(j + 16) << 4);
      } else {  // q4_g: d, z, nibbles (weight j low, j + G/2 high)
        const uint16_t z = f32_to_f16(static_cast<float>(b % 16));
        std::memcpy(p + 2, &z, 2);
        for (int64_t j = 0; j < bs / 2; ++j)
          p[4 + j] = static_cast<uint8_t>(code(j) | code(j + bs / 2) << 4);
      }
    }
  return bytes;
}

// Activations on their own quantization grid: every 32-value block starts with +-127 d1 (so the
// block scale is d1 = 2^-6 for blocks of 32, 64 and 128) and holds x = d1 (q_hi + q_lo / 256),
// which quantize to exactly (q_hi, q_lo) (int8: q_lo = 0). Token 0 and tokens >= 3 cycle through
// every code of both planes; token 1 holds the largest codes (q_hi 126, q_lo 127), token 2 the
// smallest: the products that come closest to the AVX2 int16 pair-sum limit.
std::vector<float> grid_activations(int64_t T, int64_t n, bool two_planes) {
  const float d1 = 1.0f / 64;
  std::vector<float> x(static_cast<size_t>(T * n));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) {
      int hi, lo;
      if (i % 32 == 0) {
        hi = (i / 32 + t) % 2 == 0 ? 127 : -127;
        lo = 0;
      } else if (t == 1 || t == 2) {
        hi = t == 1 ? 126 : -126;
        lo = t == 1 ? 127 : -127;
      } else {
        hi = static_cast<int>((37 * i + 11 * t) % 253) - 126;
        lo = static_cast<int>((53 * i + 7 * t) % 255) - 127;
      }
      if (!two_planes) lo = 0;
      x[static_cast<size_t>(t * n + i)] = d1 * (static_cast<float>(hi) + lo / 256.0f);
    }
  return x;
}

// With codes known exactly on both sides, every kernel must give the exact dot product up to fp32
// rounding: an int16 saturation, an int32 overflow, a wrong nibble, plane or lane-table entry
// would show up as an error of at least one weight-activation product, far above gamma * mag.
TEST(KernelExact, EveryCodeValueGivesExactDots) {
  const int64_t rows = 3, n = 4224;  // 33 x 128: 8 packed groups and a short one of 4 blocks
  int checked = 0;
  for (Format f : {Format::kQ8_0, Format::kQ4_0, Format::kQ4_G64, Format::kQ4_G128}) {
    const std::vector<uint8_t> codec_bytes = code_by_code_weights(f, rows, n);
    std::vector<double> w(static_cast<size_t>(rows * n)), mag(w.size());
    {
      const codec::FormatInfo& info = codec::format_info(f);
      std::vector<float> row(static_cast<size_t>(n));
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* src = codec_bytes.data() + codec::row_bytes(f, n) * static_cast<size_t>(r);
        codec::dequantize_row_ref(f, src, n, row.data());
        for (int64_t j = 0; j < n; ++j) {
          w[static_cast<size_t>(r * n + j)] = row[static_cast<size_t>(j)];
          double m = std::fabs(row[static_cast<size_t>(j)]);
          if (f == Format::kQ4_G64 || f == Format::kQ4_G128) {  // the kernel adds d q and d z apart
            const uint8_t* blk = src + (j / info.block_size) * info.block_bytes;
            uint16_t d, z;
            std::memcpy(&d, blk, 2);
            std::memcpy(&z, blk + 2, 2);
            m += std::fabs(static_cast<double>(f16_to_f32(d)) * f16_to_f32(z));
          }
          mag[static_cast<size_t>(r * n + j)] = m;
        }
      }
    }
    for (WeightLayout layout : layouts_for(f)) {
      std::vector<uint8_t> bytes = codec_bytes;
      if (layout == WeightLayout::kPacked) pack_rows(f, codec_bytes.data(), rows, n, bytes.data());
      for (ActPrecision prec : {ActPrecision::kPrecise, ActPrecision::kInt8})
        // Matrix x vector; a full 8-token tile and a remainder; AMX: a partial 16-token tile,
        // a full one and a remainder, and two.
        for (int64_t T : {1, 9, 12, 17, 33}) {
          const std::vector<float> x = grid_activations(T, n, prec == ActPrecision::kPrecise);
          for (Isa isa : isas_to_test()) {
            SCOPED_TRACE(std::string(codec::format_info(f).name) +
                         (layout == WeightLayout::kPacked ? " packed " : " ") + isa_name(isa) +
                         " " + act_precision_name(prec) + " T=" + std::to_string(T));
            Acts acts;
            prepare_acts(f, x.data(), T, n, &acts, isa, layout, prec);
            std::vector<float> y(static_cast<size_t>(T * rows));
            gemm_rows(f, bytes.data(), acts, y.data(), rows, 0, rows, isa);
            for (int64_t t = 0; t < T; ++t)
              for (int64_t r = 0; r < rows; ++r) {
                double exact = 0, m = 0;
                for (int64_t j = 0; j < n; ++j) {
                  const double xj = x[static_cast<size_t>(t * n + j)];
                  exact += w[static_cast<size_t>(r * n + j)] * xj;
                  m += mag[static_cast<size_t>(r * n + j)] * std::fabs(xj);
                }
                // Tolerance: fp32 accumulation only (the codes are exact).
                ASSERT_NEAR(y[static_cast<size_t>(t * rows + r)], exact, gamma_for(n) * m)
                    << "t=" << t << " r=" << r;
                ++checked;
              }
          }
        }
    }
  }
  EXPECT_GT(checked, 0);
}

// ---- the activation quantizer ------------------------------------------------------------------

// Q8_0 activations in the codec layout are in natural order: code j of plane p of token t is
// q8[t * q_stride + p * lo_offset + j]. Returns x reconstructed from the codes, d_a * c.
std::vector<double> reconstruct(const Acts& a) {
  std::vector<double> out(static_cast<size_t>(a.T * a.n));
  const auto* q = reinterpret_cast<const int8_t*>(a.q8.data());
  for (int64_t t = 0; t < a.T; ++t)
    for (int64_t j = 0; j < a.n; ++j) {
      const int8_t* hi = q + t * a.q_stride + j;
      const int32_t c = a.lo_offset != 0 ? 256 * hi[0] + hi[a.lo_offset] : hi[0];
      out[static_cast<size_t>(t * a.n + j)] =
          static_cast<double>(a.scale[static_cast<size_t>(t * (a.n_pad / 32) + j / 32)]) * c;
    }
  return out;
}

// The error bounds of ActPrecision on Gaussian data with outliers: every value within
// d_a (1 + 2^-8), and all but the clamped residuals (x / d1 within 1/512 of a half-integer: 1/256
// of uniformly spread values) within d_a (1/2 + 2^-8) (precise); within d_a (1/2 + 1e-4) (int8).
// On the same data the precise error is over 128x smaller (256x by construction).
// prepare_acts with a pool splits the tokens across threads (whole 16-token tiles): every byte,
// the AMX tile copy included, equals the single-threaded preparation.
TEST(ActQuantization, ThreadPoolGivesTheSameBytes) {
  ThreadPool pool(3);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Format f : {Format::kQ8_0, Format::kQ4_0, Format::kQ4_G64, Format::kF32})
    for (const WeightLayout layout : {WeightLayout::kCodec, WeightLayout::kPacked})
      for (const ActPrecision prec : {ActPrecision::kPrecise, ActPrecision::kInt8})
        for (const int64_t T : {int64_t{31}, int64_t{32}, int64_t{47}, int64_t{128}}) {
          const int64_t n = 256;
          std::vector<float> x(static_cast<size_t>(T * n));
          for (float& v : x) v = nd(rng);
          Acts a, b;
          prepare_acts(f, x.data(), T, n, &a, best_isa(), layout, prec);
          prepare_acts(f, x.data(), T, n, &b, best_isa(), layout, prec, &pool);
          const std::string what = std::string(codec::format_info(f).name) + " T " + std::to_string(T);
          expect_same_acts(a, b, what);
          EXPECT_EQ(a.amx_tiles, b.amx_tiles) << what;
          EXPECT_EQ(a.amx, b.amx) << what;
          EXPECT_EQ(a.amx_scale, b.amx_scale) << what;
        }
}

TEST(ActQuantization, ErrorBoundsOfBothPrecisions) {
  const int64_t T = 3, n = 4160;
  const std::vector<float> x = random_matrix(T, n, 11, 1.0f, true);
  for (Isa isa : isas_to_test()) {
    double max_err[2] = {0, 0};
    for (ActPrecision prec : {ActPrecision::kPrecise, ActPrecision::kInt8}) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " " + act_precision_name(prec));
      Acts a;
      prepare_acts(Format::kQ8_0, x.data(), T, n, &a, isa, WeightLayout::kCodec, prec);
      ASSERT_EQ(a.lo_offset != 0, prec == ActPrecision::kPrecise);
      const std::vector<double> xr = reconstruct(a);
      int64_t beyond_half = 0;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < n; ++j) {
          const size_t i = static_cast<size_t>(t * n + j);
          const double d = a.scale[static_cast<size_t>(t * (a.n_pad / 32) + j / 32)];
          const double err = std::fabs(xr[i] - x[i]);
          ASSERT_LE(err, d * act_step(prec)) << "t=" << t << " j=" << j;
          if (prec == ActPrecision::kPrecise && err > d * kPreciseTypicalStep) ++beyond_half;
          max_err[prec == ActPrecision::kPrecise ? 0 : 1] =
              std::max(max_err[prec == ActPrecision::kPrecise ? 0 : 1], err);
        }
      // 1/256 of the values expected (0.33% measured); 1% leaves room for the data's spread.
      EXPECT_LE(beyond_half, T * n / 100);
    }
    EXPECT_LT(128 * max_err[0], max_err[1]) << isa_name(isa);
  }
}

// The rounding rules of QuantizeFn on hand-picked values, on every ISA: a block with amax 127
// has d1 = 1, so x / d1 = x. 3.25 splits exactly (3, 64); the ties 3.5, -2.5 and 0.5 round q_hi
// half to even and leave a residual of -1/2 or +1/2, whose code 128 is clamped to 127.
TEST(ActQuantization, PreciseCodesOnTiesAndExactValues) {
  std::vector<float> x(64, 0.0f);
  x[0] = 127.0f;
  x[1] = 3.25f;
  x[2] = 3.5f;
  x[3] = -2.5f;
  x[4] = 0.5f;
  x[5] = -127.0f;
  x[32] = -1.0f / 256;  // a block of its own: amax 1/256, d1 = amax / 127
  const int32_t want[6] = {127 * 256, 3 * 256 + 64, 4 * 256 - 127, -2 * 256 - 127, 127, -127 * 256};
  for (Isa isa : isas_to_test()) {
    Acts a;
    prepare_acts(Format::kQ8_0, x.data(), 1, 64, &a, isa, WeightLayout::kCodec,
                 ActPrecision::kPrecise);
    const auto* q = reinterpret_cast<const int8_t*>(a.q8.data());
    for (int j = 0; j < 6; ++j)
      EXPECT_EQ(256 * q[j] + q[a.lo_offset + j], want[j]) << isa_name(isa) << " j=" << j;
    EXPECT_EQ(a.scale[0], 1.0f / 256) << isa_name(isa);
    EXPECT_EQ(q[32], -127) << isa_name(isa);  // the block's amax itself: code -127 * 256 + 0
    EXPECT_EQ(q[a.lo_offset + 32], 0) << isa_name(isa);
    EXPECT_EQ(a.scale[1], (1.0f / 256 / 127.0f) / 256) << isa_name(isa);
  }
}

TEST(ActQuantization, PrecisionNames) {
  ActPrecision p;
  EXPECT_TRUE(act_precision_from_name("INT8", &p));
  EXPECT_EQ(p, ActPrecision::kInt8);
  EXPECT_TRUE(act_precision_from_name("precise", &p));
  EXPECT_EQ(p, ActPrecision::kPrecise);
  EXPECT_FALSE(act_precision_from_name("int16", &p));
  EXPECT_STREQ(act_precision_name(ActPrecision::kInt8), "int8");
  // The default is the precise mode unless the environment opts out.
  const char* env = std::getenv("SLMC_ACTS");
  if (env == nullptr || *env == '\0') {
    EXPECT_EQ(default_act_precision(), ActPrecision::kPrecise);
  }
}

TEST(Kernels, DequantizeRowMatchesCodec) {
  const int64_t rows = 3;
  for (int64_t cols : {256, 4064, 4128})  // 4064 and 4128 end in a short packed group
    for (const codec::FormatInfo& i : codec::all_formats())
      for (WeightLayout layout : {WeightLayout::kCodec, WeightLayout::kPacked}) {
        if (!codec::row_fits(i.id, cols)) continue;
        const Weights w = make_weights(i.id, rows, cols, 7, layout);
        std::vector<float> out(cols);
        for (int64_t r = 0; r < rows; ++r) {
          dequantize_row(i.id, w.bytes.data(), cols, r, out.data(), layout);
          for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(out[j], w.w[r * cols + j]) << i.name;
        }
      }
}

TEST(Kernels, PackRowsKeepsSizeAndIsIdentityWithoutPackedLayout) {
  const int64_t rows = 2, cols = 4128;
  for (const codec::FormatInfo& i : codec::all_formats()) {
    if (!codec::row_fits(i.id, cols)) continue;
    const Weights w = make_weights(i.id, rows, cols, 3);
    std::vector<uint8_t> packed(w.bytes.size());
    pack_rows(i.id, w.bytes.data(), rows, cols, packed.data());
    if (has_packed_layout(i.id)) {
      EXPECT_NE(packed, w.bytes) << i.name;
      // Scales of the first group come first: 16 fp16 values = the 16 blocks' first two bytes.
      const int bb = i.block_bytes;
      for (int b = 0; b < 16; ++b) {
        EXPECT_EQ(packed[2 * b], w.bytes[b * bb]) << i.name;
        EXPECT_EQ(packed[2 * b + 1], w.bytes[b * bb + 1]) << i.name;
      }
    } else {
      EXPECT_EQ(packed, w.bytes) << i.name;
    }
  }
}

TEST(Kernels, RejectsBadInput) {
  Acts acts;
  std::vector<float> x(100, 1.0f);
  EXPECT_THROW(prepare_acts(Format::kQ4_0, x.data(), 1, 100, &acts, Isa::kScalar), Error);
  EXPECT_THROW(prepare_acts(Format::kQ4_G128, x.data(), 1, 64, &acts, Isa::kScalar), Error);
  prepare_acts(Format::kQ8_0, x.data(), 1, 64, &acts, Isa::kScalar);
  std::vector<uint8_t> w(codec::row_bytes(Format::kQ4_0, 64));
  float y[2];
  EXPECT_THROW(gemm_rows(Format::kQ4_0, w.data(), acts, y, 1, 0, 1, Isa::kScalar), Error);
  EXPECT_THROW(gemm_rows(Format::kQ8_0, w.data(), acts, y, 1, 1, 0, Isa::kScalar), Error);
  if (static_cast<int>(hardware_isa()) < static_cast<int>(Isa::kAvx512)) {
    EXPECT_THROW(prepare_acts(Format::kF32, x.data(), 1, 4, &acts, Isa::kAvx512), Error);
  }
  if (hardware_isa() != Isa::kAmx) {
    EXPECT_THROW(prepare_acts(Format::kF32, x.data(), 1, 4, &acts, Isa::kAmx), Error);
  }
}

TEST(Kernels, EmptyInputsAreNoOps) {
  Acts acts;
  prepare_acts(Format::kQ4_0, nullptr, 0, 64, &acts, best_isa());
  EXPECT_EQ(acts.T, 0);
  std::vector<uint8_t> w(codec::row_bytes(Format::kQ4_0, 64));
  gemm_rows(Format::kQ4_0, w.data(), acts, nullptr, 1, 0, 1, best_isa());
}

TEST(CpuFeatures, NamesAndLevels) {
  Isa isa;
  EXPECT_TRUE(isa_from_name("AVX512", &isa));
  EXPECT_EQ(isa, Isa::kAvx512);
  EXPECT_TRUE(isa_from_name("scalar", &isa));
  EXPECT_EQ(isa, Isa::kScalar);
  EXPECT_TRUE(isa_from_name("AMX", &isa));
  EXPECT_EQ(isa, Isa::kAmx);
  EXPECT_STREQ(isa_name(Isa::kAmx), "amx");
  EXPECT_EQ(vector_isa(Isa::kAmx), Isa::kAvx512);
  EXPECT_EQ(vector_isa(Isa::kAvx2), Isa::kAvx2);
  EXPECT_FALSE(isa_from_name("sse9", &isa));
  EXPECT_FALSE(isa_from_name("avx512-but-much-longer-than-any-name", &isa));
  EXPECT_STREQ(isa_name(Isa::kAvx2), "avx2");
  EXPECT_LE(static_cast<int>(best_isa()), static_cast<int>(hardware_isa()));
  std::printf("hardware ISA: %s, best ISA (after SLMC_ISA): %s\n", isa_name(hardware_isa()),
              isa_name(best_isa()));
}

}  // namespace
}  // namespace slmc::runtime
