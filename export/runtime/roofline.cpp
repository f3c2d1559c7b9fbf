#include "export/runtime/roofline.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "export/runtime/huge_buffer.h"
#include "export/runtime/kernels.h"

namespace slmc::runtime {

namespace {
// Streaming sums with explicit vector loads (the compiler does not vectorize a float sum without
// -ffast-math). Eight independent accumulators keep the adds off the critical path, and the
// software prefetch 2 KiB ahead matches the matvec kernels (without it they beat the "roof").
__attribute__((target("avx512f"))) float sum_avx512(const float* p, int64_t n) {
  __m512 a[8];
  for (__m512& v : a) v = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    for (int j = 0; j < 8; ++j) {  // the kernels' prefetch distance, so the roof is a roof
      _mm_prefetch(reinterpret_cast<const char*>(p + i + 512 + 16 * j), _MM_HINT_T0);
      a[j] = _mm512_add_ps(a[j], _mm512_loadu_ps(p + i + 16 * j));
    }
  }
  for (int j = 1; j < 8; ++j) a[0] = _mm512_add_ps(a[0], a[j]);
  float lanes[16];
  _mm512_storeu_ps(lanes, a[0]);
  float s = 0;
  for (float v : lanes) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

__attribute__((target("avx2"))) float sum_avx2(const float* p, int64_t n) {
  __m256 a[8];
  for (__m256& v : a) v = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 8; j += 2)
      _mm_prefetch(reinterpret_cast<const char*>(p + i + 512 + 8 * j), _MM_HINT_T0);
    for (int j = 0; j < 8; ++j) a[j] = _mm256_add_ps(a[j], _mm256_loadu_ps(p + i + 8 * j));
  }
  for (int j = 1; j < 8; ++j) a[0] = _mm256_add_ps(a[0], a[j]);
  float lanes[8];
  _mm256_storeu_ps(lanes, a[0]);
  float s = 0;
  for (float v : lanes) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace

float sum_floats(const float* p, int64_t n) {
  if (vector_isa(hardware_isa()) == Isa::kAvx512) return sum_avx512(p, n);
  if (hardware_isa() == Isa::kAvx2) return sum_avx2(p, n);
  float a[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  float s = 0;
  for (float v : a) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

double measure_read_gbps(uint64_t bytes, ThreadPool& pool, int reps) {
  const int64_t n = static_cast<int64_t>(std::max<uint64_t>(bytes, 1 << 20) / 4);
  // The same kind of memory the runtime streams weights from (huge_buffer.h).
  HugeBuffer mem(static_cast<size_t>(n) * 4);
  float* buf = reinterpret_cast<float*>(mem.data());
  pool.parallel_for(n, 1024, [&](int64_t b, int64_t e) {  // first touch by the reading thread
    for (int64_t i = b; i < e; ++i) buf[i] = 1.0f;
  });
  std::vector<float> sink(static_cast<size_t>(pool.size()));
  double best = 0;
  for (int r = 0; r < std::max(1, reps); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, 1024, [&](int64_t b, int64_t e) {
      sink[static_cast<size_t>(b * pool.size() / n)] += sum_floats(buf + b, e - b);
    });
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * 4 / s / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace slmc::runtime
