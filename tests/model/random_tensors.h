// Seeded random weights for every tensor a spec implies: N(0, 0.05) matrices, 1 + N(0, 0.05)
// vectors (norms and biases), in expected_tensors order. What the in-memory model tests build on.
#pragma once

#include <cstdint>
#include <random>

#include "compress/core/tensor_names.h"

namespace slmc::testing {

inline TensorMap random_tensors(const ModelSpec& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.05f);
  TensorMap out;
  for (const TensorDecl& t : expected_tensors(s)) {
    HostTensor h;
    h.shape = t.shape;
    h.data.resize(static_cast<size_t>(shape_numel(t.shape)));
    const bool vec = t.shape.size() == 1;
    for (float& v : h.data) v = vec ? 1.0f + n(rng) : n(rng);
    out[t.name] = std::move(h);
  }
  return out;
}

}  // namespace slmc::testing
