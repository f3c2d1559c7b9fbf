// vec_ops: attention over a KV cache (attend, attend2) against a double-precision reference on
// every ISA this CPU runs, and attend2 equal to two attend calls bit for bit; exp_f32 and
// silu_mul equal std::exp (and the scalar SiLU expression) bit for bit.
#include "export/runtime/vec_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace slmc::runtime {
namespace {

std::vector<Isa> isas() {
  std::vector<Isa> out = {Isa::kScalar};
  if (static_cast<int>(hardware_isa()) >= static_cast<int>(Isa::kAvx2)) out.push_back(Isa::kAvx2);
  if (static_cast<int>(hardware_isa()) >= static_cast<int>(Isa::kAvx512))
    out.push_back(Isa::kAvx512);
  return out;
}

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// softmax(scale * q . k_j) over j in [lo, hi], then sum_j p_j v_j, in double.
std::vector<double> reference(const float* q, const float* k, const float* v, int64_t stride,
                              int64_t hd, int64_t lo, int64_t hi, float scale) {
  std::vector<double> s(static_cast<size_t>(hi + 1));
  double mx = -INFINITY;
  for (int64_t j = lo; j <= hi; ++j) {
    double d = 0;
    for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(q[i]) * k[j * stride + i];
    s[static_cast<size_t>(j)] = d * scale;
    mx = std::max(mx, s[static_cast<size_t>(j)]);
  }
  double sum = 0;
  for (int64_t j = lo; j <= hi; ++j) sum += (s[static_cast<size_t>(j)] = std::exp(s[static_cast<size_t>(j)] - mx));
  std::vector<double> out(static_cast<size_t>(hd), 0.0);
  for (int64_t j = lo; j <= hi; ++j)
    for (int64_t i = 0; i < hd; ++i)
      out[static_cast<size_t>(i)] += s[static_cast<size_t>(j)] / sum * v[j * stride + i];
  return out;
}

TEST(VecOps, AttendMatchesReferenceAndAttend2MatchesAttend) {
  int checked = 0;
  for (Isa isa : isas())
    for (int64_t hd : {8, 16, 20, 48, 64, 80, 128, 136, 256})
      for (int64_t hi : {0, 7, 15, 16, 17, 40, 129})
        for (int64_t lo : {int64_t{0}, int64_t{5}}) {
          if (lo > hi) continue;
          SCOPED_TRACE(std::string(isa_name(isa)) + " hd=" + std::to_string(hd) +
                       " lo=" + std::to_string(lo) + " hi=" + std::to_string(hi));
          const int64_t stride = hd + 3;  // keys of one head need not be contiguous
          const size_t cache = static_cast<size_t>((hi + 1) * stride + hd);
          const std::vector<float> q = random_values(2 * static_cast<size_t>(hd), 1);
          const std::vector<float> k = random_values(cache, 2), v = random_values(cache, 3);
          const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
          std::vector<float> s0(static_cast<size_t>(hi + 1)), s1(s0), o0(static_cast<size_t>(hd)),
              o1(o0), p0(o0), p1(o0);
          // Head 0 at k, v; head 1 at k + 1, v + 2 (another head of the same cache).
          attend(q.data(), k.data(), v.data(), stride, hd, lo, hi, scale, s0.data(), o0.data(), isa);
          attend(q.data() + hd, k.data() + 1, v.data() + 2, stride, hd, lo, hi, scale, s1.data(),
                 o1.data(), isa);
          const std::vector<double> r0 =
              reference(q.data(), k.data(), v.data(), stride, hd, lo, hi, scale);
          for (int64_t i = 0; i < hd; ++i)
            ASSERT_NEAR(o0[static_cast<size_t>(i)], r0[static_cast<size_t>(i)], 2e-5) << i;
          attend2(q.data(), q.data() + hd, k.data(), k.data() + 1, v.data(), v.data() + 2, stride,
                  hd, lo, hi, scale, s0.data(), s1.data(), p0.data(), p1.data(), isa);
          ASSERT_EQ(std::memcmp(o0.data(), p0.data(), o0.size() * sizeof(float)), 0);
          ASSERT_EQ(std::memcmp(o1.data(), p1.data(), o1.size() * sizeof(float)), 0);
          ++checked;
        }
  EXPECT_GT(checked, 0);
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Every 251st float bit pattern (both signs, all exponents: the 16-lane path, its special-case
// lanes, inf, nan; every float was checked once, offline) plus the edges of glibc's special
// path, in odd-length chunks (masked tails).
TEST(VecOps, ExpEqualsStdExpBitForBit) {
  std::vector<float> x;
  for (uint64_t u = 0; u < (1ull << 32); u += 251) {
    float f;
    const uint32_t b = static_cast<uint32_t>(u);
    std::memcpy(&f, &b, 4);
    x.push_back(f);
  }
  for (float f : {0.0f, -0.0f, 88.0f, -88.0f, 87.99999f, 88.72283f, 88.72284f, -103.27893f,
                  -103.97208f, -104.0f, 1e-30f, -1e-30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::denorm_min()})
    x.push_back(f);
  for (Isa isa : isas()) {
    std::vector<float> y(x.size());
    for (size_t at = 0; at < x.size(); at += 1001) {
      const size_t n = std::min<size_t>(1001, x.size() - at);
      exp_f32(x.data() + at, y.data() + at, static_cast<int64_t>(n), isa);
    }
    int64_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const float e = std::exp(x[i]);
      if (bits_of(e) != bits_of(y[i]) && !(std::isnan(e) && std::isnan(y[i]))) {
        if (++bad <= 5) ADD_FAILURE() << isa_name(isa) << " exp(" << x[i] << ") = " << y[i] << ", std::exp " << e;
      }
    }
    EXPECT_EQ(bad, 0) << isa_name(isa);
  }
}

TEST(VecOps, SiluMulEqualsScalarExpression) {
  std::vector<float> g = random_values(1037, 7), u = random_values(1037, 8);
  for (size_t i = 0; i < g.size(); i += 50) g[i] *= 40.0f;  // some lanes reach |g| > 88
  g[3] = 100.0f;
  g[4] = -100.0f;
  for (Isa isa : isas()) {
    for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{1037}}) {
      std::vector<float> y(g.begin(), g.begin() + n);
      silu_mul(y.data(), u.data(), n, isa);
      for (int64_t i = 0; i < n; ++i) {
        const float want = g[static_cast<size_t>(i)] / (1.0f + std::exp(-g[static_cast<size_t>(i)])) *
                           u[static_cast<size_t>(i)];
        ASSERT_EQ(bits_of(y[static_cast<size_t>(i)]), bits_of(want))
            << isa_name(isa) << " n " << n << " i " << i << " g " << g[static_cast<size_t>(i)];
      }
    }
  }
}

}  // namespace
}  // namespace slmc::runtime
