/* Deterministic K-quant test inputs, shared by the C golden generator (gen_kquant_golden.c, built
 * against ggml) and the C++ test (kquant_test.cpp). Every value is an exact float computed with
 * integer arithmetic and one exact scaling, so both languages get the same bits. */
#ifndef SLMC_TESTS_CODEC_KQUANT_INPUTS_H_
#define SLMC_TESTS_CODEC_KQUANT_INPUTS_H_

#include <stdint.h>

#define KQ_N 1024   /* 4 super-blocks per kind */
#define KQ_KINDS 8

static inline uint32_t kq_next(uint32_t* s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8; /* 24 bits */
}
/* A value in (-1, 1) with 24 significant bits: exact in float. */
static inline float kq_unit(uint32_t* s) { return ((float)(int32_t)kq_next(s) - 8388608.0f) / 8388608.0f; }

/* kind 0: uniform; 1: bell-shaped (sum of 4 uniforms); 2: bell with rare x20 outliers;
 * 3: all non-negative; 4: a zero super-block, a constant one, tiny values, then uniform;
 * 5: all non-positive; 6: per-sub-block scales spanning 2^-12..1; 7: sparse (3/4 zeros).
 * w: importances in [0, 4) (a few exact zeros). */
static inline void kq_fill(int kind, float* x, float* w) {
  uint32_t s = 12345u + 7919u * (uint32_t)kind;
  for (int i = 0; i < KQ_N; ++i) {
    float u = kq_unit(&s);
    float v;
    switch (kind) {
      case 0: v = u; break;
      case 1: v = (u + kq_unit(&s) + kq_unit(&s) + kq_unit(&s)) * 0.25f; break;
      case 2: v = (u + kq_unit(&s)) * 0.5f; if ((kq_next(&s) & 63) == 0) v *= 20.0f; break;
      case 3: v = u < 0 ? -u : u; break;
      case 4:
        if (i < 256) v = 0.0f;
        else if (i < 512) v = 0.375f;
        else if (i < 768) v = u * 1.1920928955078125e-07f; /* 2^-23 */
        else v = u;
        break;
      case 5: v = u > 0 ? -u : u; break;
      case 6: { int e = (i / 32) % 13; v = u; while (e-- > 0) v *= 0.5f; break; }
      default: v = (kq_next(&s) & 3) ? 0.0f : u; break;
    }
    x[i] = v;
    { uint32_t r = kq_next(&s); w[i] = (r & 31) == 0 ? 0.0f : (float)(r & 0xffff) / 16384.0f; }
  }
}

#endif
