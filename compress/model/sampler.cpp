#include "compress/model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <torch/torch.h>

#include "compress/core/error.h"
#include "compress/model/transformer.h"

namespace slmc {

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(double temperature, double top_p, uint64_t seed)
    : temperature_(temperature), top_p_(top_p), rng_(seed) {
  SLMC_CHECK(temperature >= 0 && std::isfinite(temperature), "--temperature must be >= 0, got ",
             temperature);
  SLMC_CHECK(top_p > 0 && top_p <= 1, "--top-p must be in (0, 1], got ", top_p);
}

int32_t Sampler::sample(const float* logits, int64_t n) {
  if (temperature_ == 0) return argmax(logits, n);
  const float mx = logits[argmax(logits, n)];
  std::vector<double> prob(static_cast<size_t>(n));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    prob[static_cast<size_t>(i)] = std::exp((logits[i] - mx) / temperature_);
    sum += prob[static_cast<size_t>(i)];
  }
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // Nucleus: the smallest prefix of tokens by descending probability whose mass reaches top_p.
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return prob[static_cast<size_t>(a)] > prob[static_cast<size_t>(b)] ||
           (prob[static_cast<size_t>(a)] == prob[static_cast<size_t>(b)] && a < b);
  });
  size_t keep = 0;
  double mass = 0;
  while (keep < order.size()) {
    mass += prob[static_cast<size_t>(order[keep])] / sum;
    ++keep;
    if (mass >= top_p_) break;
  }
  std::uniform_real_distribution<double> u(0.0, mass);
  double r = u(rng_), acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += prob[static_cast<size_t>(order[i])] / sum;
    if (r < acc) return order[i];
  }
  return order[keep - 1];
}

std::vector<int32_t> stop_ids(int64_t bos, int64_t eos, const std::vector<int32_t>& tokenizer_eos) {
  std::vector<int32_t> ids;
  const auto add = [&](int64_t id) {
    if (id >= 0 && id <= INT32_MAX && std::find(ids.begin(), ids.end(), id) == ids.end())
      ids.push_back(static_cast<int32_t>(id));
  };
  add(bos);
  add(eos);
  for (const int32_t id : tokenizer_eos) add(id);
  return ids;
}

int64_t generate(const StepFn& step, int64_t vocab, int32_t bos, int32_t eos,
                 const std::vector<int32_t>& prompt, int64_t n, Sampler& sampler,
                 const std::function<void(int32_t)>& on_token) {
  return generate(step, vocab, stop_ids(bos, eos, {}), prompt, n, sampler, on_token);
}

int64_t generate(const StepFn& step, int64_t vocab, const std::vector<int32_t>& stop,
                 const std::vector<int32_t>& prompt, int64_t n, Sampler& sampler,
                 const std::function<void(int32_t)>& on_token) {
  SLMC_CHECK(!prompt.empty(), "generate: empty prompt (BOS expected first)");
  const float* logits = step(prompt.data(), static_cast<int64_t>(prompt.size()));
  int64_t produced = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next = sampler.sample(logits, vocab);
    if (std::find(stop.begin(), stop.end(), next) != stop.end()) break;
    on_token(next);
    ++produced;
    if (i + 1 < n) logits = step(&next, 1);
  }
  return produced;
}

int64_t generate(const Transformer& model, const std::vector<int32_t>& prompt, int64_t n,
                 Sampler& sampler, const std::function<void(int32_t)>& on_token,
                 const std::vector<int32_t>& stop) {
  const ModelSpec& spec = model.spec();
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + n;
  SLMC_CHECK(capacity <= spec.max_seq, "prompt (", prompt.size(), " tokens) + ", n,
             " new tokens exceed the model's context ", spec.max_seq);
  torch::NoGradGuard no_grad;
  KVCache cache = model.new_cache(1, capacity);
  torch::Tensor last;
  auto step = [&](const int32_t* tokens, int64_t len) -> const float* {
    std::vector<int64_t> ids(tokens, tokens + len);
    auto input = torch::from_blob(ids.data(), {1, len}, torch::kInt64);
    auto logits = model.forward(input, &cache);  // (1, len, V)
    last = logits.select(1, len - 1).squeeze(0).contiguous();
    return last.data_ptr<float>();
  };
  return generate(step, spec.vocab, stop.empty() ? stop_ids(spec.bos_id, spec.eos_id, {}) : stop,
                  prompt, n, sampler, on_token);
}

}  // namespace slmc
