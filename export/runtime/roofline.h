// The memory-read roofline, measured in the same run as a benchmark: decode streams every weight
// once per token, so the bytes a model streams per token over this bandwidth bounds its tok/s.
#pragma once

#include <cstdint>

#include "export/runtime/thread_pool.h"

namespace slmc::runtime {

// Best of `reps` GB/s of summing a `bytes`-sized buffer split across the pool's threads, each
// reading its own contiguous slice (first touched by that thread) with the kernels' prefetch.
double measure_read_gbps(uint64_t bytes, ThreadPool& pool, int reps = 5);

// The sum itself (explicit SIMD by the hardware's ISA; exposed for tests).
float sum_floats(const float* p, int64_t n);

}  // namespace slmc::runtime
