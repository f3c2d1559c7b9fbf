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

// Feeds `n` tokens to a model that keeps its own cache and returns the last position's logits.
using StepFn = std::function<const float*(const int32_t* tokens, int64_t n)>;

// Autoregressive generation for any backend: prefill `prompt` (BOS first) with one step, then
// sample up to `n` tokens, stopping early at any id of `stop` (the token is not emitted). Calls
// `on_token(id)` for each new token. Returns the number of tokens produced.
int64_t generate(const StepFn& step, int64_t vocab, const std::vector<int32_t>& stop,
                 const std::vector<int32_t>& prompt, int64_t n, Sampler& sampler,
                 const std::function<void(int32_t)>& on_token);

// The same, stopping at `bos` or `eos`.
int64_t generate(const StepFn& step, int64_t vocab, int32_t bos, int32_t eos,
                 const std::vector<int32_t>& prompt, int64_t n, Sampler& sampler,
                 const std::function<void(int32_t)>& on_token);

// The ids generation stops at: the model's BOS and EOS (config.json) and every EOS id of its
// tokenizer (tokenizer_config.json's eos_token, generation_config.json's list), without
// repeats; negative ids are left out.
std::vector<int32_t> stop_ids(int64_t bos, int64_t eos, const std::vector<int32_t>& tokenizer_eos);

// The LibTorch model with a KV cache sized prompt + n (<= max_seq), stopping at `stop` (by
// default the spec's BOS and EOS).
int64_t generate(const Transformer& model, const std::vector<int32_t>& prompt, int64_t n,
                 Sampler& sampler, const std::function<void(int32_t)>& on_token,
                 const std::vector<int32_t>& stop = {});

}  // namespace slmc
