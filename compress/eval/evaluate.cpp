#include "compress/eval/evaluate.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "compress/core/error.h"
#include "compress/core/progress.h"
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

EvalResult evaluate(const Transformer& model, const std::vector<Window>& windows,
                    const EvalOptions& opt) {
  return evaluate(
      [&](const std::vector<Window>& ws, const LogitsSink& sink) {
        for_each_window_logits(model, ws, opt.batch, sink);
      },
      model.spec().vocab, windows, opt);
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

  EvalResult r;
  r.n_windows = static_cast<int64_t>(windows.size());
  double nll_sum = 0;
  std::vector<double> kls;
  int64_t agree = 0;
  std::vector<float> ref_rows;
  std::vector<int32_t> ref_targets;
  Progress bar("eval", total, "tok");
  source(windows, [&](const float* logits, const int32_t* targets, int64_t n) {
        for (int64_t t = 0; t < n; ++t) nll_sum += token_nll(logits + t * vocab, vocab, targets[t]);
        if (writer) writer->append(logits, targets, n);
        if (ref) {
          ref_rows.resize(static_cast<size_t>(n * vocab));
          ref_targets.resize(static_cast<size_t>(n));
          ref->read(r.n_tokens, n, ref_rows.data(), ref_targets.data());
          for (int64_t t = 0; t < n; ++t) {
            SLMC_CHECK(ref_targets[static_cast<size_t>(t)] == targets[t], opt.ref_logits,
                       ": target token at position ", r.n_tokens + t, " is ",
                       ref_targets[static_cast<size_t>(t)], ", this evaluation has ", targets[t],
                       " (different data or --ctx)");
            const float* a = ref_rows.data() + t * vocab;
            const float* b = logits + t * vocab;
            kls.push_back(kl_from_logits(a, b, vocab));
            agree += argmax(a, vocab) == argmax(b, vocab);
          }
        }
        r.n_tokens += n;
        bar.update(r.n_tokens);
      });
  r.seconds = bar.elapsed_s();
  if (writer) writer->commit();
  r.nll = nll_sum / static_cast<double>(r.n_tokens);
  r.ppl = std::exp(r.nll);
  r.tok_per_s = static_cast<double>(r.n_tokens) / std::max(1e-9, r.seconds);
  if (ref) {
    r.has_ref = true;
    double s = 0;
    for (double k : kls) s += k;
    r.kl_mean = s / static_cast<double>(kls.size());
    std::sort(kls.begin(), kls.end());
    // Nearest-rank 99th percentile.
    const size_t rank = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(kls.size())));
    r.kl_p99 = kls[std::min(kls.size() - 1, rank > 0 ? rank - 1 : 0)];
    r.top1 = static_cast<double>(agree) / static_cast<double>(kls.size());
  }
  char summary[96];
  std::snprintf(summary, sizeof summary, "%.4f nats/token, ppl %.3f", r.nll, r.ppl);
  bar.finish(summary);
  return r;
}

}  // namespace slmc
