// Wall-clock accounting for reports that say where a pass's time goes.
#pragma once

#include <chrono>

namespace slmc {

// Adds the seconds of its own lifetime to `acc`.
struct ScopedSeconds {
  double& acc;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~ScopedSeconds() {
    acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

}  // namespace slmc
