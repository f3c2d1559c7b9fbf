#include "compress/eval/compare.h"

#include <algorithm>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/timer.h"

namespace slmc {

Comparison compare_models(const LogitsSource& reference, const std::vector<LogitsSource>& models,
                          int64_t vocab, const std::vector<Window>& windows,
                          const std::string& label, int64_t chunk_bytes) {
  int64_t total = 0;
  size_t longest = 1;
  for (const Window& w : windows) {
    total += static_cast<int64_t>(w.targets.size());
    longest = std::max(longest, w.targets.size());
  }
  SLMC_CHECK(total > 0, "eval: no tokens to evaluate");
  // Windows per chunk: what fits the budget; a multiple of EvalOptions::batch when at least
  // that many fit, so a LibTorch source batches its forwards exactly as over all windows.
  const int64_t per_window = static_cast<int64_t>(longest) * vocab * 4;
  int64_t chunk = std::max<int64_t>(1, chunk_bytes / std::max<int64_t>(1, per_window));
  const int64_t batch = EvalOptions().batch;
  if (chunk >= batch) chunk -= chunk % batch;

  EvalAccumulator ref_acc(vocab);
  std::vector<EvalAccumulator> acc(models.size(), EvalAccumulator(vocab));
  Progress bar(label, total * static_cast<int64_t>(1 + models.size()), "tok");
  int64_t done = 0;
  double ref_seconds = 0;
  std::vector<double> seconds(models.size(), 0.0);  // each source's own time
  std::vector<float> ref_logits;                    // the chunk's reference rows, in window order
  std::vector<int32_t> ref_targets;
  for (size_t w0 = 0; w0 < windows.size(); w0 += static_cast<size_t>(chunk)) {
    const size_t w1 = std::min(windows.size(), w0 + static_cast<size_t>(chunk));
    const std::vector<Window> part(windows.begin() + static_cast<std::ptrdiff_t>(w0),
                                   windows.begin() + static_cast<std::ptrdiff_t>(w1));
    ref_logits.clear();
    ref_targets.clear();
    {
      const ScopedSeconds timer{ref_seconds};
      reference(part, [&](const float* logits, const int32_t* targets, int64_t n) {
        ref_acc.add(logits, targets, n, nullptr);
        ref_logits.insert(ref_logits.end(), logits, logits + n * vocab);
        ref_targets.insert(ref_targets.end(), targets, targets + n);
        bar.update(done += n);
      });
    }
    for (size_t k = 0; k < models.size(); ++k) {
      size_t at = 0;  // position within the chunk
      const ScopedSeconds timer{seconds[k]};
      models[k](part, [&](const float* logits, const int32_t* targets, int64_t n) {
        SLMC_CHECK(at + static_cast<size_t>(n) <= ref_targets.size(), "compare: model ", k,
                   " yields more positions than the reference");
        for (int64_t t = 0; t < n; ++t)
          SLMC_CHECK(ref_targets[at + static_cast<size_t>(t)] == targets[t], "compare: model ", k,
                     " has target ", targets[t], " where the reference has ",
                     ref_targets[at + static_cast<size_t>(t)]);
        acc[k].add(logits, targets, n, ref_logits.data() + at * static_cast<size_t>(vocab));
        at += static_cast<size_t>(n);
        bar.update(done += n);
      });
      SLMC_CHECK(at == ref_targets.size(), "compare: model ", k, " yields ", at,
                 " positions of a chunk where the reference yields ", ref_targets.size());
    }
  }
  Comparison c;
  c.reference = ref_acc.result(static_cast<int64_t>(windows.size()), ref_seconds);
  for (size_t k = 0; k < acc.size(); ++k)
    c.models.push_back(acc[k].result(static_cast<int64_t>(windows.size()), seconds[k]));
  bar.finish(str_cat("reference ppl ", c.reference.ppl));
  return c;
}

}  // namespace slmc
