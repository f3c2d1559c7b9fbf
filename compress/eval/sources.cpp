#include "compress/eval/sources.h"

#include <vector>

#include "compress/model/windows.h"

namespace slmc {

LogitsSource torch_logits_source(const Transformer& model, int64_t batch) {
  return [&model, batch](const std::vector<Window>& windows, const LogitsSink& sink) {
    for_each_window_logits(model, windows, batch, sink);
  };
}

LogitsSource runtime_logits_source(const runtime::Model& model, runtime::ThreadPool& pool,
                                   int64_t ctx) {
  return [&model, &pool, ctx](const std::vector<Window>& windows, const LogitsSink& sink) {
    runtime::Session session(model, pool, ctx);
    std::vector<float> logits;
    for (const Window& w : windows) {
      const int64_t n = static_cast<int64_t>(w.input.size());
      logits.resize(static_cast<size_t>(n * model.spec().vocab));
      session.reset();
      session.forward(w.input.data(), n, logits.data(), /*all_logits=*/true);
      sink(logits.data(), w.targets.data(), n);
    }
  };
}

}  // namespace slmc
