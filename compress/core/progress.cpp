#include "compress/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace slmc {

namespace {
bool g_enabled = true;
}

void Progress::set_enabled(bool on) { g_enabled = on; }

std::string format_duration(double s) {
  char buf[32];
  if (!(s >= 0) || std::isinf(s)) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600),
                  static_cast<int>(s / 60) % 60);
  }
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total > 0 ? total : 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::seconds(10)),
      tty_(isatty(STDERR_FILENO) != 0) {}

Progress::~Progress() {
  if (!finished_ && tty_ && g_enabled && done_ > 0) std::fputc('\n', stderr);
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& extra) {
  done_ = done;
  if (!g_enabled) return;
  const auto now = std::chrono::steady_clock::now();
  // Redraw at most 10 times a second on a terminal, every 5 s in a log.
  const auto min_gap = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (now - last_draw_ < min_gap && done < total_) return;
  last_draw_ = now;
  const double el = elapsed_s();
  const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  const double rate = el > 0 ? static_cast<double>(done) / el : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : NAN;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s%s [%s] %3.0f%% %lld/%lld %s, %.0f %s/s, ETA %s%s%s%s", tty_ ? "\r" : "",
               label_.c_str(), bar.c_str(), frac * 100, static_cast<long long>(done),
               static_cast<long long>(total_), unit_.c_str(), rate, unit_.c_str(),
               format_duration(eta).c_str(), extra.empty() ? "" : ", ", extra.c_str(),
               tty_ ? "\x1b[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (finished_) return;
  finished_ = true;
  const double el = elapsed_s();
  if (tty_ && g_enabled) std::fprintf(stderr, "\r\x1b[K");
  std::fprintf(stderr, "%s: %lld %s in %s (%.0f %s/s)%s%s\n", label_.c_str(),
               static_cast<long long>(done_), unit_.c_str(), format_duration(el).c_str(),
               el > 0 ? static_cast<double>(done_) / el : 0.0, unit_.c_str(),
               summary.empty() ? "" : ", ", summary.c_str());
  std::fflush(stderr);
}

std::string with_commas(uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace slmc
