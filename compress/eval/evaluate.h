// Perplexity, and agreement with a reference model's saved logits (KL divergence, top-1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/model/transformer.h"
#include "compress/model/windows.h"

namespace slmc {

struct EvalOptions {
  int64_t batch = 8;             // windows per forward
  std::string save_logits;       // write (n_tokens, vocab) logits here (HDF5)
  std::string ref_logits;        // compare against these (HDF5, same windows and tokens)
};

struct EvalResult {
  int64_t n_tokens = 0;          // predicted tokens
  int64_t n_windows = 0;
  double nll = 0;                // mean nats/token
  double ppl = 0;                // exp(nll)
  double seconds = 0;
  double tok_per_s = 0;
  bool has_ref = false;
  double kl_mean = 0;            // mean over positions of KL(reference || model), nats
  double kl_p99 = 0;             // 99th percentile of the per-position KL
  double top1 = 0;               // share of positions whose argmax agrees with the reference
};

// Any backend: `source` produces the logits of `windows` for a model of `vocab` outputs.
EvalResult evaluate(const LogitsSource& source, int64_t vocab, const std::vector<Window>& windows,
                    const EvalOptions& opt);
// The LibTorch model.
EvalResult evaluate(const Transformer& model, const std::vector<Window>& windows,
                    const EvalOptions& opt);

// KL(p || q) in nats for two logit rows (softmax taken here), computed in double.
double kl_from_logits(const float* ref, const float* model, int64_t vocab);

// The running sums behind an EvalResult: NLL of the targets, and with reference rows the
// per-position KL(reference || model) and argmax agreement, in position order.
class EvalAccumulator {
 public:
  explicit EvalAccumulator(int64_t vocab) : vocab_(vocab) {}
  // logits and ref: (n, vocab) row-major; ref may be null.
  void add(const float* logits, const int32_t* targets, int64_t n, const float* ref);
  int64_t n_tokens() const { return n_tokens_; }
  // Throws slmc::Error when no token was added.
  EvalResult result(int64_t n_windows, double seconds) const;

 private:
  int64_t vocab_;
  int64_t n_tokens_ = 0, agree_ = 0;
  double nll_sum_ = 0;
  std::vector<double> kls_;
};

}  // namespace slmc
