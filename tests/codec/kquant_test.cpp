// ggml's K-quants held to ggml itself: kquant_golden.txt holds the bytes llama.cpp's own
// quantize_row_qX_K_ref and quantize_qX_K (with importance weights, the imatrix path) wrote for
// the inputs of kquant_inputs.h (gen_kquant_golden.c says how it was made). The dequantizers are
// held to gguf-py's numpy ones by kquant_ggufpy_check.py (a separate ctest).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "kquant_inputs.h"
#include "quantize/codec/formats.h"

namespace slmc::codec {
namespace {

std::map<std::string, std::vector<uint8_t>> read_golden() {
  std::ifstream f(std::string(SLMC_SOURCE_DIR) + "/tests/codec/kquant_golden.txt");
  EXPECT_TRUE(f.good()) << "tests/codec/kquant_golden.txt missing";
  std::map<std::string, std::vector<uint8_t>> out;
  std::string name, hex;
  int kind;
  while (f >> name >> kind >> hex) {
    std::vector<uint8_t> b(hex.size() / 2);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    out[name + " " + std::to_string(kind)] = std::move(b);
  }
  return out;
}

struct Case {
  const char* name;
  Format f;
  bool weighted;
};
constexpr Case kCases[] = {
    {"q4_k", Format::kQ4_K, false}, {"q5_k", Format::kQ5_K, false},
    {"q6_k", Format::kQ6_K, false}, {"q8_k", Format::kQ8_K, false},
    {"q4_k_w", Format::kQ4_K, true}, {"q5_k_w", Format::kQ5_K, true},
    {"q6_k_w", Format::kQ6_K, true},
};

TEST(KQuant, BlockSizesAreGgmls) {
  // ggml-common.h: 2*2 + 12 + 128, 2*2 + 12 + 32 + 128, 128 + 64 + 16 + 2, 4 + 256 + 2*16.
  EXPECT_EQ(format_info(Format::kQ4_K).block_bytes, 144);
  EXPECT_EQ(format_info(Format::kQ5_K).block_bytes, 176);
  EXPECT_EQ(format_info(Format::kQ6_K).block_bytes, 210);
  EXPECT_EQ(format_info(Format::kQ8_K).block_bytes, 292);
  for (Format f : {Format::kQ4_K, Format::kQ5_K, Format::kQ6_K, Format::kQ8_K}) {
    EXPECT_EQ(format_info(f).block_size, 256);
    EXPECT_TRUE(is_k_quant(f));
  }
  EXPECT_DOUBLE_EQ(format_info(Format::kQ4_K).bits_per_weight(), 4.5);
  EXPECT_DOUBLE_EQ(format_info(Format::kQ6_K).bits_per_weight(), 6.5625);
  // ggml type ids (persisted in GGUF files).
  EXPECT_EQ(static_cast<int>(Format::kQ4_K), 12);
  EXPECT_EQ(static_cast<int>(Format::kQ8_K), 15);
}

TEST(KQuant, QuantizersEqualGgmlByteForByte) {
  const auto golden = read_golden();
  ASSERT_EQ(golden.size(), std::size(kCases) * KQ_KINDS);
  std::vector<float> x(KQ_N), w(KQ_N);
  for (int kind = 0; kind < KQ_KINDS; ++kind) {
    kq_fill(kind, x.data(), w.data());
    for (const Case& c : kCases) {
      std::vector<uint8_t> out(row_bytes(c.f, KQ_N), 0);
      if (c.weighted)
        quantize_row_weighted_ref(c.f, x.data(), w.data(), KQ_N, out.data());
      else
        quantize_row_ref(c.f, x.data(), KQ_N, out.data());
      const std::vector<uint8_t>& g = golden.at(std::string(c.name) + " " + std::to_string(kind));
      ASSERT_EQ(out.size(), g.size()) << c.name;
      size_t first = out.size();
      for (size_t i = 0; i < out.size() && first == out.size(); ++i)
        if (out[i] != g[i]) first = i;
      EXPECT_EQ(first, out.size()) << c.name << " kind " << kind << ": first differing byte "
                                   << first << " (block " << first / format_info(c.f).block_bytes
                                   << ")";
    }
  }
}

// choose_grids + Grid::code + pack_row reproduce the quantizers: same bytes, or, where a
// sub-block's scale is 0 (its codes are free, every one decodes to -m), the same values.
TEST(KQuant, GridsPackIntoTheQuantizersBytes) {
  std::vector<float> x(KQ_N), w(KQ_N);
  for (int kind = 0; kind < KQ_KINDS; ++kind) {
    kq_fill(kind, x.data(), w.data());
    for (Format f : {Format::kQ4_K, Format::kQ5_K, Format::kQ6_K})
      for (bool weighted : {false, true}) {
        const FormatInfo& fi = format_info(f);
        std::vector<Grid> grids(KQ_N / fi.grid_size);
        std::vector<int> codes(KQ_N);
        for (int b = 0; b < KQ_N / 256; ++b)
          choose_grids(f, x.data() + 256 * b, weighted ? w.data() + 256 * b : nullptr,
                       grids.data() + b * fi.grids_per_block());
        for (int i = 0; i < KQ_N; ++i) codes[i] = grids[i / fi.grid_size].code(x[i]);
        std::vector<uint8_t> a(row_bytes(f, KQ_N)), ref(row_bytes(f, KQ_N));
        pack_row(f, codes.data(), grids.data(), KQ_N, a.data());
        if (weighted) {
          quantize_row_weighted_ref(f, x.data(), w.data(), KQ_N, ref.data());
        } else {
          quantize_row_ref(f, x.data(), KQ_N, ref.data());
        }
        std::vector<float> ya(KQ_N), yr(KQ_N);
        dequantize_row_ref(f, a.data(), KQ_N, ya.data());
        dequantize_row_ref(f, ref.data(), KQ_N, yr.data());
        bool zero_scale = false;
        for (const Grid& g : grids) zero_scale |= g.d == 0.0f;
        if (!zero_scale) {
          EXPECT_EQ(a, ref) << fi.name << " kind " << kind << " weighted " << weighted;
        }
        for (int i = 0; i < KQ_N; ++i) {
          ASSERT_EQ(ya[i], yr[i]) << fi.name << " kind " << kind << " weight " << i;
          ASSERT_EQ(ya[i], grids[i / fi.grid_size].value(codes[i])) << fi.name << " weight " << i;
        }
      }
  }
}

// Every code of every sub-block position, through pack_row and dequantize_row_ref, decodes to
// Grid::value (both nibble positions, both qh bits, all 64 Q6_K codes).
TEST(KQuant, EveryCodeDecodesToItsGridValue) {
  for (Format f : {Format::kQ4_K, Format::kQ5_K, Format::kQ6_K}) {
    const FormatInfo& fi = format_info(f);
    const int ng = fi.grids_per_block();
    std::vector<Grid> grids(static_cast<size_t>(ng));
    for (int j = 0; j < ng; ++j) {
      Grid& g = grids[static_cast<size_t>(j)];
      g.kd = 0x2e66;  // fp16 0.1
      if (f == Format::kQ6_K) {
        g.ksc = j * 17 - 128;  // signed scales -128 .. 127
        g.d = 0.0999755859375f * static_cast<float>(g.ksc);
        g.z = 32;
        g.qmax = 63;
      } else {
        g.kdmin = 0x2a66;  // fp16 0.05
        g.ksc = 63 - j * 7;
        g.kmin = j * 9;
        g.d = 0.0999755859375f * static_cast<float>(g.ksc);
        g.m = 0.04998779296875f * static_cast<float>(g.kmin);
        g.qmax = f == Format::kQ4_K ? 15 : 31;
      }
    }
    std::vector<int> codes(256);
    for (int rot = 0; rot <= grids[0].qmax; ++rot) {
      for (int i = 0; i < 256; ++i) codes[i] = (i + rot) % (grids[0].qmax + 1);
      std::vector<uint8_t> blk(static_cast<size_t>(fi.block_bytes));
      pack_row(f, codes.data(), grids.data(), 256, blk.data());
      std::vector<float> y(256);
      dequantize_row_ref(f, blk.data(), 256, y.data());
      for (int i = 0; i < 256; ++i)
        ASSERT_EQ(y[i], grids[i / fi.grid_size].value(codes[i])) << fi.name << " weight " << i;
    }
  }
}

TEST(KQuant, RefusesWhatItCannotDo) {
  std::vector<float> x(256, 1.0f), w(256, 1.0f);
  std::vector<uint8_t> out(400);
  EXPECT_THROW(quantize_row_ref(Format::kQ4_K, x.data(), 255, out.data()), Error);
  EXPECT_THROW(quantize_row_weighted_ref(Format::kQ8_K, x.data(), w.data(), 256, out.data()), Error);
  EXPECT_THROW(quantize_row_weighted_ref(Format::kQ4_0, x.data(), w.data(), 256, out.data()), Error);
  EXPECT_THROW(choose_grid(Format::kQ4_K, x.data()), Error);
  std::vector<Grid> grids(8);
  choose_grids(Format::kQ4_K, x.data(), nullptr, grids.data());
  grids[3].kd ^= 1;  // super-block scales must agree
  std::vector<int> codes(256, 0);
  EXPECT_THROW(pack_row(Format::kQ4_K, codes.data(), grids.data(), 256, out.data()), Error);
}

}  // namespace
}  // namespace slmc::codec
