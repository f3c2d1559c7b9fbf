#include "compress/core/float16.h"

#include <gtest/gtest.h>

#include <cmath>

namespace slmc {
namespace {

// Every one of the 65536 f16 codes round-trips exactly through f32 (NaNs stay NaN).
TEST(Float16, EveryF16CodeRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), h) << "code " << h << " value " << f;
  }
}

TEST(Float16, EveryBf16CodeRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), h) << h;
  }
}

// Rounding is to nearest even, as numpy's float16 cast does.
TEST(Float16, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);          // halfway: ties to even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);          // halfway: ties to even (up)
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                     // rounds up to inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(5.9604644775390625e-8f), 0x0001);       // smallest subnormal
  EXPECT_EQ(f32_to_f16(2.9802322387695312e-8f), 0x0000);       // half of it: ties to even (0)
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);           // bf16 tie to even
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
}

}  // namespace
}  // namespace slmc
