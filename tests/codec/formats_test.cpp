// The codec: table consistency, every code value of every format, ggml byte layouts on
// hand-computed blocks, zero-scale guards, round-trip error bounds and determinism.
#include "quantize/codec/formats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/float16.h"

namespace slmc::codec {
namespace {

// Round-trip bounds, in units of the block's decoded scale |d|. Every format rounds to the
// nearest code (error d/2) except where noted; the fp16 rounding of d adds at most
// (largest |code offset|) * |d| * 2^-11 because quantization divides by the fp32 scale.
constexpr double kF16Ulp = 1.0 / 2048;  // 2^-11: relative rounding of an fp16 scale
// Q8_0: |x - d*q| <= d/2 + 127 * d * 2^-11 (plus the rounding of d itself).
constexpr double kQ8_0MaxErrInD = 0.5 + 128 * kF16Ulp + 1e-6;
// Q4_0 clamps q = 16 to 15 (the scale comes from the value of largest magnitude, -8 * d, so the
// opposite end +8 * d has no code): values in (7.5 d, 8 d] lose up to a whole d.
constexpr double kQ4_0MaxErrInD = 1.0 + 9 * kF16Ulp + 1e-6;
// Q4_G: the quantizer already divides by the fp16 scale; only the top clamp (max / d can reach
// 15 * (1 + 2^-11) + z) adds to d/2.
constexpr double kQ4GMaxErrInD = 0.5 + 16 * kF16Ulp + 1e-6;
// Plain floats: relative rounding of one value.
constexpr double kF16RelErr = 1.0 / 2048;  // round to nearest, 11-bit significand
constexpr double kBF16RelErr = 1.0 / 256;  // round to nearest, 8-bit significand

std::vector<float> random_values(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  // A few outliers, as real weights have.
  for (int64_t i = 0; i < n; i += 97) x[static_cast<size_t>(i)] *= 6.0f;
  return x;
}

std::vector<uint8_t> quantize(Format f, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(f, static_cast<int64_t>(x.size())));
  quantize_row_ref(f, x.data(), static_cast<int64_t>(x.size()), out.data());
  return out;
}

std::vector<float> dequantize(Format f, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row_ref(f, bytes.data(), n, y.data());
  return y;
}

// ---- the format table ------------------------------------------------------------------------

TEST(FormatTable, NamesIdsAndSizesAgree) {
  std::set<std::string> names;
  std::set<uint32_t> ids;
  for (const FormatInfo& i : all_formats()) {
    EXPECT_TRUE(names.insert(i.name).second) << i.name;
    EXPECT_TRUE(ids.insert(static_cast<uint32_t>(i.id)).second) << i.name;
    Format f;
    ASSERT_TRUE(format_from_name(i.name, &f));
    EXPECT_EQ(f, i.id);
    ASSERT_TRUE(format_from_id(static_cast<uint32_t>(i.id), &f));
    EXPECT_EQ(f, i.id);
    EXPECT_EQ(&format_info(i.id), &i);
    EXPECT_EQ(row_bytes(i.id, i.block_size), static_cast<size_t>(i.block_bytes));
    EXPECT_EQ(row_bytes(i.id, 4 * i.block_size), static_cast<size_t>(4 * i.block_bytes));
  }
  EXPECT_EQ(format_info(Format::kQ8_0).block_bytes, static_cast<int>(sizeof(BlockQ8_0)));
  EXPECT_EQ(format_info(Format::kQ4_0).block_bytes, static_cast<int>(sizeof(BlockQ4_0)));
  EXPECT_EQ(format_info(Format::kQ4_G64).block_bytes, static_cast<int>(sizeof(BlockQ4G64)));
  EXPECT_EQ(format_info(Format::kQ4_G128).block_bytes, static_cast<int>(sizeof(BlockQ4G128)));
  EXPECT_DOUBLE_EQ(format_info(Format::kQ4_0).bits_per_weight(), 4.5);
  EXPECT_DOUBLE_EQ(format_info(Format::kQ8_0).bits_per_weight(), 8.5);
  EXPECT_DOUBLE_EQ(format_info(Format::kQ4_G128).bits_per_weight(), 4.25);
  // Persisted ids are ggml's type ids where ggml has the format.
  EXPECT_EQ(static_cast<uint32_t>(Format::kF32), 0u);
  EXPECT_EQ(static_cast<uint32_t>(Format::kF16), 1u);
  EXPECT_EQ(static_cast<uint32_t>(Format::kQ4_0), 2u);
  EXPECT_EQ(static_cast<uint32_t>(Format::kQ8_0), 8u);
  EXPECT_EQ(static_cast<uint32_t>(Format::kBF16), 30u);
}

TEST(FormatTable, LookupsRejectUnknowns) {
  Format f;
  EXPECT_TRUE(format_from_name("Q4_0", &f));
  EXPECT_EQ(f, Format::kQ4_0);
  EXPECT_FALSE(format_from_name("q3_k", &f));  // a ggml type slmc does not implement
  EXPECT_FALSE(format_from_id(7, &f));
  EXPECT_THROW(format_info(static_cast<Format>(7)), Error);
  EXPECT_NE(format_names().find("q4_g128"), std::string::npos);
}

TEST(FormatTable, RowsMustFitBlocks) {
  EXPECT_TRUE(row_fits(Format::kF32, 7));
  EXPECT_FALSE(row_fits(Format::kF32, 0));
  EXPECT_TRUE(row_fits(Format::kQ4_0, 96));
  EXPECT_FALSE(row_fits(Format::kQ4_0, 100));
  EXPECT_FALSE(row_fits(Format::kQ4_G64, 96));
  EXPECT_FALSE(row_fits(Format::kQ4_G128, 192));
  EXPECT_THROW(row_bytes(Format::kQ8_0, 33), Error);
  std::vector<float> x(48, 1.0f);
  std::vector<uint8_t> out(64);
  EXPECT_THROW(quantize_row_ref(Format::kQ4_0, x.data(), 48, out.data()), Error);
  EXPECT_THROW(dequantize_row_ref(Format::kQ4_G64, out.data(), 48, x.data()), Error);
}

// ---- every code value ----------------------------------------------------------------------

TEST(Q8_0, DecodesAll256Codes) {
  // 8 blocks cover the 256 int8 codes (including -128, which the quantizer never writes).
  std::vector<BlockQ8_0> blocks(8);
  for (int c = 0; c < 256; ++c) {
    blocks[c / 32].d = f32_to_f16(0.25f);
    blocks[c / 32].qs[c % 32] = static_cast<int8_t>(c - 128);
  }
  std::vector<float> y(256);
  dequantize_row_ref(Format::kQ8_0, blocks.data(), 256, y.data());
  for (int c = 0; c < 256; ++c) EXPECT_EQ(y[c], 0.25f * static_cast<float>(c - 128)) << c;
}

TEST(Q8_0, EncodesEveryCodeExactly) {
  // x = c * 0.5 with 127 * 0.5 present: d = 0.5 exactly, so every code in [-127, 127] round-trips.
  for (int c0 = -127; c0 <= 127; c0 += 31) {  // codes c0 .. c0 + 30 in x[1..31]
    std::vector<float> x(32);
    x[0] = 63.5f;
    for (int j = 1; j < 32; ++j) x[j] = 0.5f * static_cast<float>(std::min(127, c0 + j - 1));
    const std::vector<uint8_t> bytes = quantize(Format::kQ8_0, x);
    BlockQ8_0 b;
    std::memcpy(&b, bytes.data(), sizeof(b));
    EXPECT_EQ(f16_to_f32(b.d), 0.5f);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], static_cast<int>(x[j] * 2)) << j;
  }
}

TEST(Q4_0, DecodesAll16CodesInBothNibbles) {
  BlockQ4_0 b;
  b.d = f32_to_f16(1.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  std::vector<float> y(32);
  dequantize_row_ref(Format::kQ4_0, &b, 32, y.data());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 1.5f * static_cast<float>(j - 8)) << "low nibble, code " << j;
    EXPECT_EQ(y[j + 16], 1.5f * static_cast<float>(15 - j - 8)) << "high nibble, code " << 15 - j;
  }
}

template <int G>
void check_q4g_codes() {
  BlockQ4G<G> b;
  b.d = f32_to_f16(0.75f);
  b.z = f32_to_f16(5.0f);
  for (int j = 0; j < G / 2; ++j) b.qs[j] = static_cast<uint8_t>((j % 16) | ((15 - j % 16) << 4));
  std::vector<float> y(G);
  const Format f = G == 64 ? Format::kQ4_G64 : Format::kQ4_G128;
  dequantize_row_ref(f, &b, G, y.data());
  for (int j = 0; j < G / 2; ++j) {
    EXPECT_EQ(y[j], 0.75f * static_cast<float>(j % 16 - 5)) << j;
    EXPECT_EQ(y[j + G / 2], 0.75f * static_cast<float>(15 - j % 16 - 5)) << j;
  }
}

TEST(Q4G, DecodesAll16CodesInBothNibbles) {
  check_q4g_codes<64>();
  check_q4g_codes<128>();
}

// ---- byte-exact layouts on hand-computed blocks --------------------------------------------

// x[j] = j - 16. Q4_0: the value of largest magnitude is -16, d = -16 / -8 = 2 (fp16 0x4000),
// q = min(15, trunc(x / 2 + 8.5)) = (j + 1) / 2 clamped to 15; byte j = q[j] | q[j + 16] << 4.
TEST(Q4_0, MatchesGgmlBytes) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  const std::vector<uint8_t> expected = {0x00, 0x40,  // d = 2.0
                                         0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4,
                                         0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
  EXPECT_EQ(quantize(Format::kQ4_0, x), expected);
}

// Same x. Q8_0: d = 16 / 127 (fp16 0x3008), q = roundf(x * 127 / 16).
TEST(Q8_0, MatchesGgmlBytes) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  const int8_t q[32] = {-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48,
                        -40,  -32,  -24,  -16,  -8,  0,   8,   16,  24,  32,  40,
                        48,   56,   64,   71,   79,  87,  95,  103, 111, 119};
  std::vector<uint8_t> expected = {0x08, 0x30};
  for (int8_t c : q) expected.push_back(static_cast<uint8_t>(c));
  EXPECT_EQ(quantize(Format::kQ8_0, x), expected);
}

// x[j] = (j mod 16) / 2 - 2: min -2, max 5.5, d = 7.5 / 15 = 0.5 (fp16 0x3800), z = 4 (0x4400),
// q = j mod 16 exactly; byte j = q[j] | q[j + G/2] << 4.
template <int G>
void check_q4g_bytes() {
  std::vector<float> x(G);
  for (int j = 0; j < G; ++j) x[j] = static_cast<float>(j % 16) * 0.5f - 2.0f;
  std::vector<uint8_t> expected = {0x00, 0x38, 0x00, 0x44};
  for (int j = 0; j < G / 2; ++j)
    expected.push_back(static_cast<uint8_t>((j % 16) | (((j + G / 2) % 16) << 4)));
  const Format f = G == 64 ? Format::kQ4_G64 : Format::kQ4_G128;
  const std::vector<uint8_t> bytes = quantize(f, x);
  EXPECT_EQ(bytes, expected);
  EXPECT_EQ(dequantize(f, bytes, G), x);  // exact: every value is on the grid
}

TEST(Q4G, MatchesHandComputedBytes) {
  check_q4g_bytes<64>();
  check_q4g_bytes<128>();
}

TEST(Floats, MatchIeeeBytes) {
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 65504.0f};
  EXPECT_EQ(quantize(Format::kF16, x),
            (std::vector<uint8_t>{0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b}));
  EXPECT_EQ(quantize(Format::kBF16, x),
            (std::vector<uint8_t>{0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f, 0x80, 0x47}));
  std::vector<uint8_t> f32(16);
  std::memcpy(f32.data(), x.data(), 16);
  EXPECT_EQ(quantize(Format::kF32, x), f32);
}

// ---- zero blocks: the d = 0 guards ----------------------------------------------------------

TEST(ZeroBlocks, QuantizeToZeroScaleAndDecodeToZero) {
  for (const FormatInfo& i : all_formats()) {
    const int64_t n = 2 * 128;
    std::vector<float> x(n, 0.0f);
    const std::vector<uint8_t> bytes = quantize(i.id, x);
    const std::vector<float> y = dequantize(i.id, bytes, n);
    for (float v : y) {
      EXPECT_EQ(v, 0.0f) << i.name;
      EXPECT_FALSE(std::isnan(v)) << i.name;
    }
  }
  // Q4_0 of zeros, as ggml writes it: d = 0 / -8 = -0.0 (fp16 0x8000), every code the offset 8.
  const std::vector<uint8_t> q4 = quantize(Format::kQ4_0, std::vector<float>(32, 0.0f));
  EXPECT_EQ(q4[0], 0x00);
  EXPECT_EQ(q4[1], 0x80);
  for (int j = 2; j < 18; ++j) EXPECT_EQ(q4[j], 0x88);
}

TEST(ZeroBlocks, OneZeroBlockAmongOthers) {
  std::vector<float> x = random_values(128, 3);
  for (int j = 32; j < 64; ++j) x[j] = 0.0f;
  for (Format f : {Format::kQ8_0, Format::kQ4_0}) {
    const std::vector<float> y = dequantize(f, quantize(f, x), 128);
    for (int j = 32; j < 64; ++j) EXPECT_EQ(y[j], 0.0f);
  }
}

// ---- round-trip error bounds ---------------------------------------------------------------

// Largest |x - decode(encode(x))| / |d| over the row, d the decoded scale of each block.
double max_err_in_d(Format f, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  const std::vector<uint8_t> bytes = quantize(f, x);
  const std::vector<float> y = dequantize(f, bytes, n);
  const FormatInfo& info = format_info(f);
  double worst = 0;
  for (int64_t b = 0; b < n / info.block_size; ++b) {
    uint16_t dh;
    std::memcpy(&dh, bytes.data() + b * info.block_bytes, 2);
    const double d = std::fabs(f16_to_f32(dh));
    for (int64_t j = b * info.block_size; j < (b + 1) * info.block_size; ++j) {
      const double err = std::fabs(static_cast<double>(x[j]) - y[j]);
      if (d == 0) {
        EXPECT_EQ(err, 0.0);
      } else {
        worst = std::max(worst, err / d);
      }
    }
  }
  return worst;
}

TEST(RoundTrip, ErrorWithinFormatBound) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const std::vector<float> x = random_values(4096, seed, seed % 2 ? 0.02f : 3.0f);
    EXPECT_LE(max_err_in_d(Format::kQ8_0, x), kQ8_0MaxErrInD) << seed;
    EXPECT_LE(max_err_in_d(Format::kQ4_0, x), kQ4_0MaxErrInD) << seed;
    EXPECT_LE(max_err_in_d(Format::kQ4_G64, x), kQ4GMaxErrInD) << seed;
    EXPECT_LE(max_err_in_d(Format::kQ4_G128, x), kQ4GMaxErrInD) << seed;
    // All-positive and all-negative rows exercise the zero point at the ends of its range.
    std::vector<float> pos = x, neg = x;
    for (size_t i = 0; i < x.size(); ++i) {
      pos[i] = std::fabs(x[i]);
      neg[i] = -std::fabs(x[i]);
    }
    for (const auto* v : {&pos, &neg}) {
      EXPECT_LE(max_err_in_d(Format::kQ4_G64, *v), kQ4GMaxErrInD) << seed;
      EXPECT_LE(max_err_in_d(Format::kQ4_G128, *v), kQ4GMaxErrInD) << seed;
      EXPECT_LE(max_err_in_d(Format::kQ4_0, *v), kQ4_0MaxErrInD) << seed;
    }
  }
}

TEST(RoundTrip, FloatsWithinRelativeRounding) {
  const std::vector<float> x = random_values(4097, 11);
  const std::vector<float> f32 = dequantize(Format::kF32, quantize(Format::kF32, x), 4097);
  const std::vector<float> f16 = dequantize(Format::kF16, quantize(Format::kF16, x), 4097);
  const std::vector<float> bf16 = dequantize(Format::kBF16, quantize(Format::kBF16, x), 4097);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(f32[i], x[i]);
    EXPECT_LE(std::fabs(f16[i] - x[i]), kF16RelErr * std::fabs(x[i]) + 6e-8) << x[i];
    EXPECT_LE(std::fabs(bf16[i] - x[i]), kBF16RelErr * std::fabs(x[i])) << x[i];
  }
}

TEST(RoundTrip, Q8_0IsNearlyLossless) {
  // Relative L2 error of Q8_0 on Gaussian weights with outliers: well under 1%.
  const std::vector<float> x = random_values(8192, 5);
  const std::vector<float> y = dequantize(Format::kQ8_0, quantize(Format::kQ8_0, x), 8192);
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += x[i] * x[i];
  }
  EXPECT_LT(std::sqrt(num / den), 0.01);
}

// ---- determinism ---------------------------------------------------------------------------

TEST(Determinism, SameInputSameBytes) {
  const int64_t rows = 5, cols = 256;
  const std::vector<float> x = random_values(rows * cols, 9);
  for (const FormatInfo& i : all_formats()) {
    const std::vector<uint8_t> a = quantize_ref(i.id, x.data(), rows, cols);
    const std::vector<uint8_t> b = quantize_ref(i.id, x.data(), rows, cols);
    EXPECT_EQ(a, b) << i.name;
    ASSERT_EQ(a.size(), rows * row_bytes(i.id, cols)) << i.name;
    for (int64_t r = 0; r < rows; ++r) {  // the 2-D helper is the row codec, row by row
      std::vector<float> row(x.begin() + r * cols, x.begin() + (r + 1) * cols);
      const std::vector<uint8_t> one = quantize(i.id, row);
      EXPECT_EQ(0, std::memcmp(one.data(), a.data() + r * one.size(), one.size())) << i.name;
    }
  }
}

}  // namespace
}  // namespace slmc::codec
