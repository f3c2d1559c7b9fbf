// Tokenizer encoding speed on one core and memory: loads one tokenizer file, encodes a text
// several times and prints one table row (or --json): load time, MB/s and tokens/s (thread CPU
// time and wall time, the best of --reps runs; the first run also fills the word cache), peak
// RSS after loading, after encoding the text once, and after encoding it --scale times over
// (memory must not grow with the input beyond the ids). bench/tokenizer_bench.sh runs it for
// every family.
//
// Usage: slmc_tokenizer_bench TOKENIZER TEXT [--reps N] [--scale K] [--name NAME] [--json]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/tokenizer/tokenizer.h"

namespace {

double thread_cpu_s() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peak_rss_mb() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: slmc_tokenizer_bench TOKENIZER TEXT [--reps N] [--scale K] [--name NAME] [--json]\n");
    return 2;
  }
  const std::string path = argv[1], text_path = argv[2];
  int reps = 5, scale = 8;
  std::string name = path;
  bool json = false;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--scale" && i + 1 < argc) {
      scale = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--name" && i + 1 < argc) {
      name = argv[++i];
    } else if (a == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "slmc_tokenizer_bench: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  try {
    const std::string text = slmc::read_file(text_path);
    const double rss_text = peak_rss_mb();
    const double c0 = thread_cpu_s(), w0 = wall_s();
    const auto tok = slmc::load_tokenizer(path);
    const double load_cpu = thread_cpu_s() - c0, load_wall = wall_s() - w0;
    const double rss_load = peak_rss_mb();
    double best_cpu = 1e30, best_wall = 1e30;
    size_t n_ids = 0;
    for (int r = 0; r < reps; ++r) {
      const double c = thread_cpu_s(), w = wall_s();
      n_ids = tok->encode(text).size();
      best_cpu = std::min(best_cpu, thread_cpu_s() - c);
      best_wall = std::min(best_wall, wall_s() - w);
    }
    const double rss_once = peak_rss_mb();
    std::string big;
    big.reserve(text.size() * static_cast<size_t>(scale));
    for (int k = 0; k < scale; ++k) big += text;
    const double rss_big_text = peak_rss_mb();
    const size_t n_big = tok->encode(big).size();
    const double rss_big = peak_rss_mb();
    const double mb = static_cast<double>(text.size()) / 1e6;
    if (json) {
      std::printf("%s\n", nlohmann::json{{"name", name}, {"kind", tok->kind()}, {"vocab", tok->vocab_size()},
                                         {"text_bytes", text.size()}, {"tokens", n_ids},
                                         {"load_s_cpu", load_cpu}, {"load_s_wall", load_wall},
                                         {"mb_per_s_cpu", mb / best_cpu}, {"mb_per_s_wall", mb / best_wall},
                                         {"tokens_per_s_cpu", static_cast<double>(n_ids) / best_cpu},
                                         {"rss_mb_loaded", rss_load}, {"rss_mb_encoded", rss_once},
                                         {"rss_mb_encoded_x", rss_big}, {"scale", scale},
                                         {"rss_mb_text_x", rss_big_text - rss_text}, {"tokens_x", n_big}}
                                  .dump()
                                  .c_str());
    } else {
      // Peak RSS the x`scale` encode added beyond its text and its ids (4 bytes each); 0 when
      // it needed nothing more (the peak is a high-water mark, freed memory is reused).
      const double growth = std::max(0.0, rss_big - rss_big_text - static_cast<double>(n_big) * 4 / (1 << 20));
      std::printf("| %-12s | %-13s | %7lld | %7zu | %5.2f | %6.1f | %6.1f | %8.2fM | %6.0f | %6.0f | %6.0f | %6.1f |\n",
                  name.c_str(), tok->kind().c_str(), static_cast<long long>(tok->vocab_size()), n_ids,
                  load_cpu, mb / best_cpu, mb / best_wall, static_cast<double>(n_ids) / best_cpu / 1e6,
                  rss_load, rss_once, rss_big, growth);
    }
  } catch (const slmc::Error& e) {
    std::fprintf(stderr, "slmc_tokenizer_bench: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
