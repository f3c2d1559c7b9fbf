#include "compress/eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/eval/sources.h"
#include "compress/io/h5.h"
#include "compress/model/sampler.h"

namespace slmc {

namespace {
// log-softmax of a row into `out`, in double.
void log_softmax(const float* x, int64_t n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  double mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) (*out)[static_cast<size_t>(i)] = x[i] - lse;
}
}  // namespace

double kl_from_logits(const float* ref, const float* model, int64_t vocab) {
  std::vector<double> lp, lq;
  log_softmax(ref, vocab, &lp);
  log_softmax(model, vocab, &lq);
  double kl = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const double p = std::exp(lp[static_cast<size_t>(i)]);
    if (p > 0) kl += p * (lp[static_cast<size_t>(i)] - lq[static_cast<size_t>(i)]);
  }
  return std::max(0.0, kl);
}

void EvalAccumulator::add(const float* logits, const int32_t* targets, int64_t n,
                          const float* ref) {
  for (int64_t t = 0; t < n; ++t) nll_sum_ += token_nll(logits + t * vocab_, vocab_, targets[t]);
  if (ref)
    for (int64_t t = 0; t < n; ++t) {
      const float* a = ref + t * vocab_;
      const float* b = logits + t * vocab_;
      kls_.push_back(kl_from_logits(a, b, vocab_));
      agree_ += argmax(a, vocab_) == argmax(b, vocab_);
    }
  n_tokens_ += n;
}

EvalResult EvalAccumulator::result(int64_t n_windows, double seconds) const {
  SLMC_CHECK(n_tokens_ > 0, "eval: no tokens to evaluate");
  EvalResult r;
  r.n_windows = n_windows;
  r.n_tokens = n_tokens_;
  r.seconds = seconds;
  r.nll = nll_sum_ / static_cast<double>(n_tokens_);
  r.ppl = std::exp(r.nll);
  r.tok_per_s = static_cast<double>(n_tokens_) / std::max(1e-9, seconds);
  if (!kls_.empty()) {
    r.has_ref = true;
    double s = 0;
    for (double k : kls_) s += k;
    r.kl_mean = s / static_cast<double>(kls_.size());
    std::vector<double> sorted = kls_;
    std::sort(sorted.begin(), sorted.end());
    // Nearest-rank 99th percentile.
    const size_t rank = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(sorted.size())));
    r.kl_p99 = sorted[std::min(sorted.size() - 1, rank > 0 ? rank - 1 : 0)];
    r.top1 = static_cast<double>(agree_) / static_cast<double>(sorted.size());
  }
  return r;
}

EvalResult evaluate(const Transformer& model, const std::vector<Window>& windows,
                    const EvalOptions& opt) {
  return evaluate(torch_logits_source(model, opt.batch), model.spec().vocab, windows, opt);
}

EvalResult evaluate(const LogitsSource& source, int64_t vocab, const std::vector<Window>& windows,
                    const EvalOptions& opt) {
  int64_t total = 0;
  for (const Window& w : windows) total += static_cast<int64_t>(w.targets.size()) - w.skip;
  SLMC_CHECK(total > 0, "eval: no tokens to evaluate");

  std::unique_ptr<LogitWriter> writer;
  if (!opt.save_logits.empty()) writer = std::make_unique<LogitWriter>(opt.save_logits, vocab);
  std::unique_ptr<LogitReader> ref;
  if (!opt.ref_logits.empty()) {
    ref = std::make_unique<LogitReader>(opt.ref_logits);
    SLMC_CHECK(ref->vocab() == vocab, opt.ref_logits, ": reference logits have vocab ", ref->vocab(),
               ", the model has ", vocab);
    SLMC_CHECK(ref->n_positions() == total, opt.ref_logits, ": reference logits cover ",
               ref->n_positions(), " positions, this evaluation has ", total,
               " (use the same data and --ctx)");
  }

  EvalAccumulator acc(vocab);
  std::vector<float> ref_rows;
  std::vector<int32_t> ref_targets;
  Progress bar("eval", total, "tok");
  source(windows, [&](const float* logits, const int32_t* targets, int64_t n) {
    if (writer) writer->append(logits, targets, n);
    if (ref) {
      ref_rows.resize(static_cast<size_t>(n * vocab));
      ref_targets.resize(static_cast<size_t>(n));
      ref->read(acc.n_tokens(), n, ref_rows.data(), ref_targets.data());
      for (int64_t t = 0; t < n; ++t)
        SLMC_CHECK(ref_targets[static_cast<size_t>(t)] == targets[t], opt.ref_logits,
                   ": target token at position ", acc.n_tokens() + t, " is ",
                   ref_targets[static_cast<size_t>(t)], ", this evaluation has ", targets[t],
                   " (different data or --ctx)");
    }
    acc.add(logits, targets, n, ref ? ref_rows.data() : nullptr);
    bar.update(acc.n_tokens());
  });
  if (writer) writer->commit();
  const EvalResult r = acc.result(static_cast<int64_t>(windows.size()), bar.elapsed_s());
  char summary[96];
  std::snprintf(summary, sizeof summary, "%.4f nats/token, ppl %.3f", r.nll, r.ppl);
  bar.finish(summary);
  return r;
}

}  // namespace slmc
