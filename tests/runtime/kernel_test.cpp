// Matmul kernels against "dequantize with the _ref codec, then a dense fp64 dot", for every weight
// format on every ISA this CPU has (and scalar), over awkward shapes, with the tolerance derived
// from the format next to each check. Also: SIMD == scalar on the same quantized activations, and
// prepare_acts gives the same bytes on every ISA.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "export/runtime/kernels.h"

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
// Activation quantization: |x - d_a * q_a| <= d_a / 2, loosened by the rounding of x * (1 / d_a)
// before it is rounded to the nearest code (127 * 2 ulp of a value below 128).
constexpr double kActHalfStep = 0.5 + 1e-4;

const int64_t kRows[] = {1, 3, 17};
const int64_t kTokens[] = {1, 2, 7, 8, 9, 128};

std::vector<int64_t> cols_for(Format f) {
  if (!codec::format_info(f).quantized) return {1, 7, 31, 32, 33, 64, 127, 128, 4096, 4097};
  std::vector<int64_t> out;
  for (int64_t n : {32, 64, 96, 128, 160, 192, 256, 320, 384, 4064, 4096, 4128, 4160, 4224})
    if (codec::row_fits(f, n)) out.push_back(n);
  return out;
}

std::vector<Isa> isas_to_test() {
  std::vector<Isa> out = {Isa::kScalar};
  if (static_cast<int>(hardware_isa()) >= static_cast<int>(Isa::kAvx2)) out.push_back(Isa::kAvx2);
  if (hardware_isa() == Isa::kAvx512) out.push_back(Isa::kAvx512);
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
  const bool quantized = codec::format_info(f).quantized;
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
          quant += std::fabs(wj) * da * kActHalfStep;
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

using KernelParam = std::tuple<Format, Isa, WeightLayout>;

class KernelTest : public ::testing::TestWithParam<KernelParam> {};

TEST_P(KernelTest, MatchesDequantizedDenseDot) {
  const Format f = std::get<0>(GetParam());
  const Isa isa = std::get<1>(GetParam());
  const WeightLayout layout = std::get<2>(GetParam());
  const int64_t max_rows = 17;
  int checked = 0;
  for (int64_t cols : cols_for(f)) {
    const Weights w = make_weights(f, max_rows, cols, static_cast<uint32_t>(cols), layout);
    for (int64_t T : kTokens) {
      if (T == 128 && cols > 4096) continue;  // keeps the suite quick; 4096 covers T = 128
      const std::vector<float> x =
          random_matrix(T, cols, static_cast<uint32_t>(1000 + T), 1.0f, T > 1);
      Acts acts, scalar_acts;
      prepare_acts(f, x.data(), T, cols, &acts, isa, layout);
      prepare_acts(f, x.data(), T, cols, &scalar_acts, Isa::kScalar, layout);
      ASSERT_EQ(acts.weight_layout, layout);
      expect_same_acts(acts, scalar_acts, "prepare_acts differs from scalar");
      for (int64_t rows : kRows) {
        SCOPED_TRACE(std::string(codec::format_info(f).name) + " " + isa_name(isa) +
                     " cols=" + std::to_string(cols) + " T=" + std::to_string(T) +
                     " rows=" + std::to_string(rows));
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
            // Tolerance: activation quantization (integer formats) + fp32 accumulation.
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
         isa_name(std::get<1>(info.param));
}

std::vector<KernelParam> all_params() {
  std::vector<KernelParam> out;
  for (const codec::FormatInfo& i : codec::all_formats())
    for (Isa isa : isas_to_test()) {
      out.emplace_back(i.id, isa, WeightLayout::kCodec);
      if (has_packed_layout(i.id)) out.emplace_back(i.id, isa, WeightLayout::kPacked);
    }
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
    for (Isa isa : isas_to_test()) {
      Acts acts;
      prepare_acts(f, x.data(), 1, n, &acts, isa);
      float y = 0;
      gemm_rows(f, bytes.data(), acts, &y, 1, 0, 1, isa);
      EXPECT_NEAR(y, exact, gamma_for(n) * mag)
          << codec::format_info(f).name << " " << isa_name(isa);
    }
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
  if (hardware_isa() != Isa::kAvx512) {
    EXPECT_THROW(prepare_acts(Format::kF32, x.data(), 1, 4, &acts, Isa::kAvx512), Error);
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
  EXPECT_FALSE(isa_from_name("sse9", &isa));
  EXPECT_FALSE(isa_from_name("avx512-but-much-longer-than-any-name", &isa));
  EXPECT_STREQ(isa_name(Isa::kAvx2), "avx2");
  EXPECT_LE(static_cast<int>(best_isa()), static_cast<int>(hardware_isa()));
  std::printf("hardware ISA: %s, best ISA (after SLMC_ISA): %s\n", isa_name(hardware_isa()),
              isa_name(best_isa()));
}

}  // namespace
}  // namespace slmc::runtime
