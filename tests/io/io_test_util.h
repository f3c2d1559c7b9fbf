// Fixtures shared by the tests of compress/io.
#pragma once

#include <random>

#include "compress/core/model_spec.h"
#include "compress/core/tensor_names.h"

namespace slmc::iotest {

// Every tensor `spec` declares, uniform in [-1, 1) from `seed`.
inline TensorMap random_tensors(const ModelSpec& spec, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  TensorMap m;
  for (const TensorDecl& d : expected_tensors(spec)) {
    HostTensor t;
    t.shape = d.shape;
    t.data.resize(static_cast<size_t>(t.numel()));
    for (float& v : t.data) v = dist(rng);
    m[d.name] = std::move(t);
  }
  return m;
}

}  // namespace slmc::iotest
