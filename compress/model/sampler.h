// Next-token selection: greedy at temperature 0, else temperature + nucleus (top-p) sampling with
// a seeded generator, so a (seed, model, prompt) triple always gives the same text.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace slmc {

class Sampler {
 public:
  Sampler(double temperature, double top_p, uint64_t seed);
  // logits: `n` floats. Returns the chosen id. Greedy picks the first maximum (as llama2.c does).
  int32_t sample(const float* logits, int64_t n);

 private:
  double temperature_, top_p_;
  std::mt19937_64 rng_;
};

int32_t argmax(const float* v, int64_t n);

class Transformer;

// Autoregressive generation with a KV cache: prefill `prompt` (BOS first), then sample up to `n`
// tokens, stopping early at BOS or EOS. Calls `on_token(id)` for each new token. Returns the
// number of tokens produced.
int64_t generate(const Transformer& model, const std::vector<int32_t>& prompt, int64_t n,
                 Sampler& sampler, const std::function<void(int32_t)>& on_token);

}  // namespace slmc
