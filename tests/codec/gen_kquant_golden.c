// Generates tests/codec/kquant_golden.txt with ggml itself: the bytes of llama.cpp's own K-quant
// quantizers (ggml-quants.c of node-llama-cpp 3.22.1's release) on inputs both sides rebuild from
// kquant_inputs.h. Run once, by hand, after bench/llama_cpp.sh has built ggml:
//   L=$(bench/llama_cpp.sh)/../..   # the llama.cpp cache root (src/, build/)
//   cc -O2 -I$L/src/ggml/include -I$L/src/ggml/src tests/codec/gen_kquant_golden.c \
//      $L/build/ggml/src/libggml-base.a -lstdc++ -lgomp -lm -lpthread -o /tmp/gen && /tmp/gen > tests/codec/kquant_golden.txt
#include <stdio.h>
#include <string.h>

#include "ggml.h"
#include "ggml-quants.h"
#include "kquant_inputs.h"

static void hex(const char* name, int kind, const void* p, size_t n) {
  printf("%s %d ", name, kind);
  for (size_t i = 0; i < n; ++i) printf("%02x", ((const unsigned char*)p)[i]);
  printf("\n");
}

int main(void) {
  float x[KQ_N], w[KQ_N];
  static unsigned char out[KQ_N * 2];
  for (int kind = 0; kind < KQ_KINDS; ++kind) {
    kq_fill(kind, x, w);
    memset(out, 0, sizeof out);
    quantize_row_q4_K_ref(x, (block_q4_K*)out, KQ_N);
    hex("q4_k", kind, out, KQ_N / 256 * sizeof(block_q4_K));
    memset(out, 0, sizeof out);
    quantize_row_q5_K_ref(x, (block_q5_K*)out, KQ_N);
    hex("q5_k", kind, out, KQ_N / 256 * sizeof(block_q5_K));
    memset(out, 0, sizeof out);
    quantize_row_q6_K_ref(x, (block_q6_K*)out, KQ_N);
    hex("q6_k", kind, out, KQ_N / 256 * sizeof(block_q6_K));
    memset(out, 0, sizeof out);
    quantize_row_q8_K_ref(x, (block_q8_K*)out, KQ_N);
    hex("q8_k", kind, out, KQ_N / 256 * sizeof(block_q8_K));
    memset(out, 0, sizeof out);
    quantize_q4_K(x, out, 1, KQ_N, w);
    hex("q4_k_w", kind, out, KQ_N / 256 * sizeof(block_q4_K));
    memset(out, 0, sizeof out);
    quantize_q5_K(x, out, 1, KQ_N, w);
    hex("q5_k_w", kind, out, KQ_N / 256 * sizeof(block_q5_K));
    memset(out, 0, sizeof out);
    quantize_q6_K(x, out, 1, KQ_N, w);
    hex("q6_k_w", kind, out, KQ_N / 256 * sizeof(block_q6_K));
  }
  return 0;
}
