// What the PTQ methods share: rtn_quantize against the codec, pack_result decoding exactly the
// codes it was given, rel_output_error, and the grid API (choose_grid, Grid::code, pack_row)
// against the reference quantizers the methods' codes must be consistent with.
#include "quantize/quant_common.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "quantize/codec/formats.h"

namespace slmc::quant {
namespace {

using codec::Format;

const Format kGridFormats[] = {Format::kQ8_0, Format::kQ4_0, Format::kQ4_G64, Format::kQ4_G128};

const char* name(Format f) { return codec::format_info(f).name; }

torch::Tensor random_weights(int64_t rows, int64_t cols, uint64_t seed) {
  torch::manual_seed(seed);
  return 0.05 * torch::randn({rows, cols});
}

torch::Tensor from_vector(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return torch::from_blob(const_cast<float*>(v.data()), {rows, cols}, torch::kFloat32).clone();
}

TEST(QuantCommonTest, RtnBytesEqualCodecReference) {
  const torch::Tensor W = random_weights(7, 256, 1);
  for (const Format f : {Format::kQ8_0, Format::kQ4_G64, Format::kQ4_0, Format::kQ4_G128,
                         Format::kF16, Format::kBF16, Format::kF32}) {
    const QuantResult r = rtn_quantize(W, f);
    EXPECT_EQ(r.packed.bytes, codec::quantize_ref(f, W.data_ptr<float>(), 7, 256)) << name(f);
    EXPECT_EQ(r.packed.format, f);
    EXPECT_EQ(r.packed.shape, (std::vector<int64_t>{7, 256}));
    EXPECT_TRUE(torch::equal(
        r.dequant, from_vector(codec::dequantize_ref(f, r.packed.bytes.data(), 7, 256), 7, 256)))
        << name(f);
    EXPECT_EQ(r.rel_output_error, -1.0) << "no H given";
    EXPECT_EQ(r.dist.n, 7 * 256);
  }
}

// q4_g*: the clip path (choose_grid, Grid::code, pack_row) and the codec's quantizer share the
// fp16 scale and both round to nearest, so a clip of 1 stores the same bytes.
TEST(QuantCommonTest, ClipOfOnesEqualsUnclippedForQ4G) {
  const torch::Tensor W = random_weights(9, 256, 2);
  for (const Format f : {Format::kQ4_G64, Format::kQ4_G128}) {
    const int64_t nb = 256 / codec::format_info(f).block_size;
    const QuantResult clipped = rtn_quantize(W, f, torch::Tensor(), torch::ones({9, nb}));
    const QuantResult plain = rtn_quantize(W, f);
    EXPECT_EQ(clipped.packed.bytes, plain.packed.bytes) << name(f);
    EXPECT_TRUE(torch::equal(clipped.dequant, plain.dequant)) << name(f);
  }
}

// Symmetric q4_g64/q4_g128: zero point 8 and q4_0's scale (the value of largest magnitude / -8,
// fp16), so the block's extreme weight is exact and every weight is within half a step of its
// value unless it is clamped at code 15 (the far side of the range has one step less: at most
// d + d/2 off). Per-channel: every block of a row carries the row's one grid. Both are decoded by
// the formats' own dequantizer, so the runtime reads them as any q4_g*/q8_0 tensor.
TEST(QuantCommonTest, SymmetricAndPerChannelGrids) {
  const torch::Tensor W = random_weights(6, 256, 5);
  const float* w = W.data_ptr<float>();
  GridRule sym;
  sym.symmetric = true;
  for (const Format f : {Format::kQ4_G64, Format::kQ4_G128}) {
    const int bs = codec::format_info(f).block_size;
    const QuantResult r = rtn_quantize(W, f, {}, {}, sym);
    const QuantResult q40 = rtn_quantize(W, Format::kQ4_0);
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t b = 0; b < 256 / bs; ++b) {
        const float* x = w + i * 256 + b * bs;
        const codec::Grid g = codec::choose_grid(f, x, 1.0f, true);
        EXPECT_EQ(g.z, 8.0f);
        float amax = 0, ext = 0;
        for (int j = 0; j < bs; ++j)
          if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), ext = x[j];
        EXPECT_EQ(g.d, f16_to_f32(f32_to_f16(ext / -8.0f)));
        for (int j = 0; j < bs; ++j) {
          const float deq = r.dequant[i][b * bs + j].item<float>();
          EXPECT_EQ(deq, g.round(x[j])) << name(f) << " row " << i << " weight " << b * bs + j;
          EXPECT_LE(std::fabs(deq - x[j]), 1.5f * std::fabs(g.d) * 1.0001f);
        }
      }
    // Same grid rule as q4_0 at twice or four times the group: never more accurate than q4_0.
    EXPECT_GE((r.dequant - W).pow(2).sum().item<double>(),
              (q40.dequant - W).pow(2).sum().item<double>() * 0.999)
        << name(f);
  }
  GridRule pc;
  pc.per_channel = true;
  for (const Format f : kGridFormats) {
    const int bs = codec::format_info(f).block_size;
    const QuantResult r = rtn_quantize(W, f, {}, {}, pc);
    const QuantResult blockwise = rtn_quantize(W, f);
    const std::vector<float> deq = codec::dequantize_ref(f, r.packed.bytes.data(), 6, 256);
    for (int64_t i = 0; i < 6; ++i) {
      const codec::Grid g = codec::choose_grid(f, w + i * 256, 1.0f, false, 256);
      for (int64_t j = 0; j < 256; ++j)
        ASSERT_EQ(deq[static_cast<size_t>(i * 256 + j)], g.round(w[i * 256 + j]))
            << name(f) << " row " << i << " weight " << j << " (block size " << bs << ")";
    }
    // One range per row is coarser than one per block.
    EXPECT_GT((r.dequant - W).pow(2).sum().item<double>(),
              (blockwise.dequant - W).pow(2).sum().item<double>())
        << name(f);
  }
  EXPECT_THROW(rtn_quantize(W, Format::kF16, {}, {}, pc), Error);
  EXPECT_THROW(rtn_quantize(W, Format::kQ8_0, {}, torch::ones({6, 8}), pc), Error);
}

// q8_0 (and q4_0): ggml computes codes with the unrounded fp32 scale, the grid with the fp16
// scale the block stores, so a clip of 1 is not byte-identical to the plain path: a code can
// differ by one where x / d sits within |q| * 2^-11 of a midpoint. The grid's code is then the
// nearest on the stored scale, so the clip-1 path is never less accurate, weight by weight.
TEST(QuantCommonTest, ClipOfOnesIsNeverWorseForQ8_0) {
  const torch::Tensor W = random_weights(9, 256, 3);
  const QuantResult clipped = rtn_quantize(W, Format::kQ8_0, torch::Tensor(), torch::ones({9, 8}));
  const QuantResult plain = rtn_quantize(W, Format::kQ8_0);
  const torch::Tensor ec = (clipped.dequant - W).abs(), ep = (plain.dequant - W).abs();
  EXPECT_TRUE((ec <= ep).all().item<bool>());
  // Same stored scales (the first 2 bytes of every 34-byte block).
  for (size_t b = 0; b < clipped.packed.bytes.size(); b += 34)
    EXPECT_EQ(std::memcmp(&clipped.packed.bytes[b], &plain.packed.bytes[b], 2), 0) << b;
  // A one-code step is d = max|x| / 127 <= 0.25 / 127 here; nothing differs by more.
  EXPECT_LE((clipped.dequant - plain.dequant).abs().max().item<double>(), 0.25 / 127 * 1.001);
}

TEST(QuantCommonTest, RelOutputError) {
  const torch::Tensor W = random_weights(6, 64, 4);
  torch::manual_seed(5);
  const torch::Tensor X = torch::randn({128, 64});
  const torch::Tensor H = X.t().mm(X);
  EXPECT_EQ(rel_output_error(W, W, H), 0.0);
  // H = I: the relative squared Frobenius error.
  const torch::Tensor Q = W + 0.01 * torch::randn({6, 64});
  const double want = (W - Q).pow(2).sum().item<double>() / W.pow(2).sum().item<double>();
  EXPECT_NEAR(rel_output_error(W, Q, torch::eye(64)), want, 1e-6 * want);
  // Against the outputs themselves: ||(W - Q) X^T||^2 / ||W X^T||^2.
  const double num = (W - Q).to(torch::kFloat64).mm(X.t().to(torch::kFloat64)).pow(2).sum()
                         .item<double>();
  const double den = W.to(torch::kFloat64).mm(X.t().to(torch::kFloat64)).pow(2).sum()
                         .item<double>();
  EXPECT_NEAR(rel_output_error(W, Q, H), num / den, 1e-5 * num / den);
  EXPECT_EQ(rel_output_error(W, Q, torch::zeros({64, 64})), 0.0);  // no signal: 0, not NaN
  const QuantResult r = rtn_quantize(W, Format::kQ4_0, H);
  EXPECT_NEAR(r.rel_output_error, rel_output_error(W, r.dequant, H), 1e-12);
}

// Random codes on random grids: pack_result stores exactly them, and dequant is what the bytes
// decode to, value(code) for every weight.
TEST(QuantCommonTest, PackResultDecodesExactlyTheCodes) {
  const int64_t rows = 5, cols = 256;
  const torch::Tensor W = random_weights(rows, cols, 6);
  std::mt19937 rng(7);
  for (const Format f : kGridFormats) {
    const int bs = codec::format_info(f).block_size;
    const int64_t nb = cols / bs;
    std::vector<codec::Grid> grids(static_cast<size_t>(rows * nb));
    torch::Tensor codes = torch::empty({rows, cols}, torch::kInt32);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t b = 0; b < nb; ++b) {
        codec::Grid& g = grids[static_cast<size_t>(i * nb + b)];
        g = codec::choose_grid(f, W.data_ptr<float>() + i * cols + b * bs);
        std::uniform_int_distribution<int> code(g.qmin, g.qmax);
        for (int j = 0; j < bs; ++j) codes[i][b * bs + j] = code(rng);
      }
    const torch::Tensor H = torch::eye(cols);
    const QuantResult r = pack_result(W, f, codes, grids, H);
    ASSERT_EQ(r.packed.bytes.size(), codec::row_bytes(f, cols) * rows) << name(f);
    const torch::Tensor decoded =
        from_vector(codec::dequantize_ref(f, r.packed.bytes.data(), rows, cols), rows, cols);
    EXPECT_TRUE(torch::equal(r.dequant, decoded)) << name(f);
    int64_t wrong = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < cols; ++c) {
        const codec::Grid& g = grids[static_cast<size_t>(i * nb + c / bs)];
        if (r.dequant[i][c].item<float>() != g.value(codes[i][c].item<int>())) ++wrong;
      }
    EXPECT_EQ(wrong, 0) << name(f);
    EXPECT_NEAR(r.rel_output_error, rel_output_error(W, r.dequant, H), 1e-12) << name(f);
  }
}

TEST(QuantCommonTest, PackResultRejectsMismatchedShapes) {
  const torch::Tensor W = random_weights(2, 64, 8);
  std::vector<codec::Grid> grids(4, codec::choose_grid(Format::kQ8_0, W.data_ptr<float>()));
  const torch::Tensor codes = torch::zeros({2, 64}, torch::kInt32);
  EXPECT_THROW(pack_result(W, Format::kQ8_0, codes.narrow(1, 0, 32), grids, {}), Error);
  grids.pop_back();
  EXPECT_THROW(pack_result(W, Format::kQ8_0, codes, grids, {}), Error);
}

// Every code of every grid format can be packed and decodes to value(q): codes qmin..qmax in
// turn, on a grid with a nonzero zero point for the asymmetric formats.
TEST(QuantCommonTest, EveryCodeIsPackable) {
  for (const Format f : kGridFormats) {
    const int bs = codec::format_info(f).block_size;
    const int64_t n = 8 * bs;  // 8 blocks: every q8_0 code appears (255 codes < 256 weights)
    codec::Grid g;
    const std::vector<float> seed(static_cast<size_t>(bs), -0.75f);
    g = codec::choose_grid(f, seed.data());
    if (f == Format::kQ4_G64 || f == Format::kQ4_G128) {
      g.d = f16_to_f32(f32_to_f16(0.1f));
      g.z = 6;
    }
    std::vector<int> codes(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) codes[i] = g.qmin + static_cast<int>(i % (g.qmax - g.qmin + 1));
    const std::vector<codec::Grid> grids(static_cast<size_t>(n / bs), g);
    std::vector<uint8_t> bytes(codec::row_bytes(f, n));
    codec::pack_row(f, codes.data(), grids.data(), n, bytes.data());
    std::vector<float> y(static_cast<size_t>(n));
    codec::dequantize_row_ref(f, bytes.data(), n, y.data());
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(y[i], g.value(codes[i])) << name(f) << " code " << codes[i];
    // And Grid::code maps each value back to its code.
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(g.code(y[i]), codes[i]) << name(f);
    // Out of range codes are refused, not wrapped.
    std::vector<int> bad = codes;
    bad[3] = g.qmax + 1;
    EXPECT_THROW(codec::pack_row(f, bad.data(), grids.data(), n, bytes.data()), Error) << name(f);
  }
}

// Blocks whose stored scale is exact in fp16 (largest magnitude 127 * 2^-7 for q8_0, 8 * 2^-4
// for q4_0; any block for q4_g*, whose codec quantizes with the fp16 scale already), so the
// codec's fp32-scale codes and the grid's meet on the same scale.
std::vector<float> blocks_with_exact_scales(Format f, int64_t n, uint32_t seed) {
  const int bs = codec::format_info(f).block_size;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.49f, 0.49f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = u(rng);
  for (int64_t b = 0; b < n / bs; ++b) {
    const float big = f == Format::kQ8_0 ? 127.0f / 128.0f : 1.0f;
    x[static_cast<size_t>(b * bs + (b * 7) % bs)] = (b % 2) ? big : -big;
  }
  return x;
}

// pack_row(choose_grid codes) == quantize_row_ref byte for byte for q8_0 (exact-scale blocks)
// and q4_g64/q4_g128 (any blocks).
TEST(QuantCommonTest, ChooseGridPackRowMatchesQuantizeRowRef) {
  for (const Format f : {Format::kQ8_0, Format::kQ4_G64, Format::kQ4_G128}) {
    const int bs = codec::format_info(f).block_size;
    const int64_t n = 16 * bs;
    for (const uint32_t seed : {11u, 12u}) {
      std::vector<float> x;
      if (f == Format::kQ8_0) {
        x = blocks_with_exact_scales(f, n, seed);
      } else {
        const torch::Tensor t = random_weights(1, n, seed);
        x.assign(t.data_ptr<float>(), t.data_ptr<float>() + n);
      }
      std::vector<codec::Grid> grids(static_cast<size_t>(n / bs));
      std::vector<int> codes(static_cast<size_t>(n));
      for (int64_t b = 0; b < n / bs; ++b) {
        grids[b] = codec::choose_grid(f, x.data() + b * bs);
        for (int j = 0; j < bs; ++j) codes[b * bs + j] = grids[b].code(x[b * bs + j]);
      }
      std::vector<uint8_t> packed(codec::row_bytes(f, n)), ref(codec::row_bytes(f, n));
      codec::pack_row(f, codes.data(), grids.data(), n, packed.data());
      codec::quantize_row_ref(f, x.data(), n, ref.data());
      EXPECT_EQ(packed, ref) << name(f) << " seed " << seed;
    }
  }
}

// q4_0: ggml truncates x * id + 8.5 (rounding halves up) where Grid::code rounds halves to even,
// so on exact-scale blocks the decoded values agree except at midpoints x / d + 8 = k + 1/2.
TEST(QuantCommonTest, ChooseGridQ4_0AgreesWithGgmlExceptAtTies) {
  const int64_t n = 64 * 32;
  std::vector<float> x = blocks_with_exact_scales(Format::kQ4_0, n, 13);
  // Plant exact midpoints: with d = +-1/8, x = (k + 1/2 - 8) * d.
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = (b % 2) ? -0.125f : 0.125f;  // +1 planted -> d = -1/8; -1 -> d = 1/8
    x[static_cast<size_t>(b * 32 + (b * 7 + 3) % 32)] = (static_cast<float>(b % 15) + 0.5f - 8) * d;
  }
  std::vector<codec::Grid> grids(static_cast<size_t>(n / 32));
  std::vector<int> codes(static_cast<size_t>(n));
  for (int64_t b = 0; b < n / 32; ++b) {
    grids[b] = codec::choose_grid(Format::kQ4_0, x.data() + b * 32);
    ASSERT_EQ(std::fabs(grids[b].d), 0.125f) << "block " << b;
    for (int j = 0; j < 32; ++j) codes[b * 32 + j] = grids[b].code(x[b * 32 + j]);
  }
  std::vector<uint8_t> packed(codec::row_bytes(Format::kQ4_0, n));
  std::vector<uint8_t> ref(codec::row_bytes(Format::kQ4_0, n));
  codec::pack_row(Format::kQ4_0, codes.data(), grids.data(), n, packed.data());
  codec::quantize_row_ref(Format::kQ4_0, x.data(), n, ref.data());
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  codec::dequantize_row_ref(Format::kQ4_0, packed.data(), n, a.data());
  codec::dequantize_row_ref(Format::kQ4_0, ref.data(), n, b.data());
  int64_t ties = 0, differ_at_ties = 0;
  for (int64_t i = 0; i < n; ++i) {
    const codec::Grid& g = grids[static_cast<size_t>(i / 32)];
    const float t = x[i] / g.d + g.z;
    const bool tie = t - std::floor(t) == 0.5f;
    ties += tie;
    if (tie) {
      differ_at_ties += a[i] != b[i];
      EXPECT_LE(std::fabs(a[i] - b[i]), std::fabs(g.d)) << i;  // one code at most
    } else {
      EXPECT_EQ(a[i], b[i]) << "weight " << i << " x " << x[i] << " x/d+z " << t;
    }
  }
  EXPECT_EQ(ties, n / 32);  // the planted ones; random uniform floats hit none
  // ggml rounds k + 1/2 up, Grid::code to even: they part at even k, half of the planted ties.
  EXPECT_GT(differ_at_ties, 0);
}

// Arbitrary blocks (scale not exact in fp16): q8_0 and q4_0 codes may differ from ggml's by one,
// and only where the grid's code is the closer one on the stored scale.
TEST(QuantCommonTest, ChooseGridIsNeverFartherThanGgmlRounding) {
  for (const Format f : {Format::kQ8_0, Format::kQ4_0}) {
    const int64_t n = 128 * 32;
    const torch::Tensor t = random_weights(1, n, 14);
    const float* x = t.data_ptr<float>();
    std::vector<codec::Grid> grids(static_cast<size_t>(n / 32));
    std::vector<int> codes(static_cast<size_t>(n));
    for (int64_t b = 0; b < n / 32; ++b) {
      grids[b] = codec::choose_grid(f, x + b * 32);
      for (int j = 0; j < 32; ++j) codes[b * 32 + j] = grids[b].code(x[b * 32 + j]);
    }
    std::vector<uint8_t> packed(codec::row_bytes(f, n)), ref(codec::row_bytes(f, n));
    codec::pack_row(f, codes.data(), grids.data(), n, packed.data());
    codec::quantize_row_ref(f, x, n, ref.data());
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    codec::dequantize_row_ref(f, packed.data(), n, a.data());
    codec::dequantize_row_ref(f, ref.data(), n, b.data());
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float d = std::fabs(grids[static_cast<size_t>(i / 32)].d);
      ASSERT_LE(std::fabs(x[i] - a[i]), std::fabs(x[i] - b[i])) << name(f) << " weight " << i;
      ASSERT_LE(std::fabs(a[i] - b[i]), d * 1.0001f) << name(f) << " weight " << i;
      differ += a[i] != b[i];
    }
    std::printf("[ grid     ] %s: %lld of %lld codes differ from ggml's fp32-scale rounding\n",
                name(f), static_cast<long long>(differ), static_cast<long long>(n));
  }
}

}  // namespace
}  // namespace slmc::quant
