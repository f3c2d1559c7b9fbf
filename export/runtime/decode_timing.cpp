#include "export/runtime/decode_timing.h"

#include <algorithm>
#include <chrono>

namespace slmc::runtime {

double timed_decode_tok_s(Session& session, int64_t gen, const std::function<int32_t(int64_t)>& token,
                          float* logits) {
  session.reset();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < gen; ++i) {
    const int32_t t = token(i);
    session.forward(&t, 1, logits, false);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(gen) / std::max(s, 1e-9);
}

}  // namespace slmc::runtime
