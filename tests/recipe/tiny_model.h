// Small in-memory models and calibration sets for the pass tests (quantize, prune, pins).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "compress/core/tensor_names.h"
#include "compress/recipe/pass.h"
#include "tests/model/random_tensors.h"

namespace slmc::testing {

// A llama (or, with n_expert > 0, a mixtral) of `layers` uniform blocks: 4 query heads, 2 KV
// heads, random_tensors() from `seed`.
inline CompressedModel tiny_model(int64_t d, int64_t ffn, int64_t vocab, int64_t layers, bool tied,
                                  uint32_t seed = 7, int64_t n_expert = 0,
                                  int64_t n_expert_used = 0) {
  ModelSpec s = make_uniform_spec(n_expert > 0 ? Family::kMixtral : Family::kLlama, vocab, d,
                                  layers, 4, 2, ffn, 128);
  s.tied_embeddings = tied;
  s.bos_id = 1;
  for (LayerSpec& l : s.layers) {
    l.n_expert = n_expert;
    l.n_expert_used = n_expert_used;
  }
  CompressedModel m;
  m.model.spec = s;
  m.model.path = "tiny";
  m.model.tensors = random_tensors(s, seed);
  return m;
}

// `rows` sequences of BOS (id 1) + len - 1 uniform random ids.
inline CalibrationSet random_calibration(int64_t vocab, int64_t rows, int64_t len,
                                         uint32_t seed = 3) {
  std::mt19937 rng(seed);
  CalibrationSet c;
  c.origin = "random";
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> row = {1};
    for (int64_t t = 1; t < len; ++t) row.push_back(static_cast<int32_t>(rng() % vocab));
    c.rows.push_back(row);
  }
  return c;
}

}  // namespace slmc::testing
