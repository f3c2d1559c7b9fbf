// Loop nest shared by the SIMD units. Included only by ISA translation units: everything here has
// internal linkage (anonymous namespace), so each unit gets its own copy built with its own flags.
//
// A kernel K processes the columns in "steps" of K::kStep weights and provides
//   template <int R, int TT> static void tile(const GemmArgs& a, int64_t r, int64_t t,
//                                             int64_t s0, int64_t s1, float* out);
// which writes out[i * TT + j] = dot of W row r + i with token t + j over steps [s0, s1). The
// tile keeps R x TT accumulators in registers and decodes each weight step once for TT tokens.
//
// Matrix x vector (T = 1) runs K::kRowsMv rows at a time straight through the row. For T > 1 the
// nest is: row block (kRowBlock rows, whose weights of one column chunk stay in L2) > column chunk
// (kChunkSteps steps, whose activations for kTokens tokens stay in L1) > token tile > row tile.
// Partial sums of later chunks are added to y. Kernels for precise activations (two code planes,
// K<true>) halve kChunkSteps, so a chunk's activation bytes stay those of the int8 mode.
#pragma once

#include <cstdint>

#include "export/runtime/kernels_internal.h"

namespace slmc::runtime::internal {
namespace {

template <class K, int R, int TT>
inline void tile_store(const GemmArgs& a, int64_t r, int64_t t, int64_t s0, int64_t s1,
                       bool accumulate) {
  float out[R * TT];
  K::template tile<R, TT>(a, r, t, s0, s1, out);
  for (int j = 0; j < TT; ++j) {
    float* y = a.y + (t + j) * a.ldy + r;
    for (int i = 0; i < R; ++i) y[i] = accumulate ? y[i] + out[i * TT + j] : out[i * TT + j];
  }
}

template <class K, int R, int TT>
inline void row_tiles(const GemmArgs& a, int64_t rb, int64_t re, int64_t t, int64_t s0, int64_t s1,
                      bool accumulate) {
  int64_t r = rb;
  for (; r + R <= re; r += R) tile_store<K, R, TT>(a, r, t, s0, s1, accumulate);
  for (; r < re; ++r) tile_store<K, 1, TT>(a, r, t, s0, s1, accumulate);
}

// Runs a token tile of `tt` <= TT tokens with a kernel instantiated for exactly `tt`.
template <class K, int R, int TT>
inline void token_tile(const GemmArgs& a, int64_t rb, int64_t re, int64_t t, int tt, int64_t s0,
                       int64_t s1, bool accumulate) {
  if constexpr (TT > 1) {
    if (tt < TT) return token_tile<K, R, TT - 1>(a, rb, re, t, tt, s0, s1, accumulate);
  }
  row_tiles<K, R, TT>(a, rb, re, t, s0, s1, accumulate);
}

template <class K>
void gemm(const GemmArgs& a) {
  const int64_t steps = (a.n + K::kStep - 1) / K::kStep;
  const int64_t T = a.x.T;
  if (T == 1) {
    row_tiles<K, K::kRowsMv, 1>(a, a.r0, a.r1, 0, 0, steps, false);
    return;
  }
  for (int64_t rb = a.r0; rb < a.r1; rb += K::kRowBlock) {
    const int64_t re = rb + K::kRowBlock < a.r1 ? rb + K::kRowBlock : a.r1;
    for (int64_t s0 = 0; s0 < steps; s0 += K::kChunkSteps) {
      const int64_t s1 = s0 + K::kChunkSteps < steps ? s0 + K::kChunkSteps : steps;
      for (int64_t t = 0; t < T; t += K::kTokens) {
        const int tt = static_cast<int>(T - t < K::kTokens ? T - t : K::kTokens);
        token_tile<K, K::kRows, K::kTokens>(a, rb, re, t, tt, s0, s1, s0 > 0);
      }
    }
  }
}

}  // namespace
}  // namespace slmc::runtime::internal
