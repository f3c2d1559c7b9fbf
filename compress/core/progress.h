// A progress bar on stderr with rate and ETA, and a final summary line. stdout stays clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace slmc {

class Progress {
 public:
  // `total` units of work (e.g. tokens or steps); `unit` names them ("tok", "step").
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();

  // Advances to `done` units; `extra` is shown after the bar (e.g. "loss 2.31").
  void update(int64_t done, const std::string& extra = "");
  // Prints the final line: label, total, elapsed, rate, and `summary`.
  void finish(const std::string& summary = "");
  double elapsed_s() const;

  // Globally silence bars (e.g. --quiet); summaries still print.
  static void set_enabled(bool on);

 private:
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false;
  bool tty_;
};

// Formats seconds as "1h02m", "3m05s" or "4.2s".
std::string format_duration(double seconds);

// Digits grouped by commas: 1234567 -> "1,234,567".
std::string with_commas(uint64_t v);

}  // namespace slmc
