// slmc_kernel_bench: matmul kernel speed per weight format, 1 and 2 threads, matrix x vector,
// x 8 and x 128 tokens, beside the memory-read roofline measured in the same run.
//
//   slmc_kernel_bench [--json] [--isa scalar|avx2|avx512|amx] [--formats q4_0,q8_0,...] [--quick]
//                     [--no-packed] [--acts precise,int8] [--tokens 1,8,128] [--shapes 4096x4096]
//
// Formats with a packed layout (q4_0, q8_0) are timed twice: codec bytes, and "/pk" = the same
// bytes after pack_rows (WeightLayout::kPacked). Integer formats are timed with each activation
// precision of --acts (default both; "/i8" marks the int8 activations), one after the other on
// the same weights, so their ratio is measured under the same machine load.
// Times are medians over repeats of gemm_rows (activations prepared once, outside the timing;
// prepare_acts is timed on its own). GB/s counts weight bytes streamed per call; GFLOP/s counts
// 2 * rows * cols * T. The roofline is the best of several streaming sums over a buffer.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "export/runtime/kernels.h"
#include "export/runtime/roofline.h"
#include "export/runtime/thread_pool.h"
#include "quantize/codec/formats.h"

namespace slmc::runtime {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  bool json = false;
  bool quick = false;
  bool packed = true;  // also time the packed layout of formats that have one
  Isa isa = best_isa();
  std::vector<codec::Format> formats;
  std::vector<ActPrecision> acts = {ActPrecision::kPrecise, ActPrecision::kInt8};
  std::vector<int64_t> tokens = {1, 8, 128};
  std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {4096, 14336}};
};

// Comma-separated list; false on a malformed entry.
template <typename Parse>
bool parse_list(const std::string& list, Parse parse) {
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    if (!parse(list.substr(pos, comma - pos))) return false;
    pos = comma + 1;
  }
  return true;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a.empty() ? "n/a" : a + " " + b + " " + c;
}

// ---- roofline: export/runtime/roofline.h ----------------------------------------------------

struct Roofline {
  int64_t bytes;
  int threads;
  double gbps;  // best of the repeats
};

Roofline measure_roofline(int64_t bytes, ThreadPool& pool, int reps) {
  return {bytes, pool.size(), measure_read_gbps(static_cast<uint64_t>(bytes), pool, reps)};
}

// ---- kernels -------------------------------------------------------------------------------

struct Result {
  std::string format;
  int64_t rows, cols, T;
  int threads;
  double ms, gbps, gflops;
};

// Deterministic, cheap pseudo-random weights (a real distribution is not needed for speed).
std::vector<float> make_values(int64_t count, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(count));
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    x = (static_cast<float>(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
  }
  return v;
}

double time_gemm(codec::Format f, const AlignedVector<uint8_t>& w, const Acts& acts,
                 std::vector<float>& y, int64_t rows, ThreadPool* pool, Isa isa, int reps) {
  auto call = [&] {
    if (pool == nullptr) {
      gemm_rows(f, w.data(), acts, y.data(), rows, 0, rows, isa);
    } else {
      pool->parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        gemm_rows(f, w.data(), acts, y.data(), rows, r0, r1, isa);
      });
    }
  };
  call();  // warm up: page faults, caches
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    call();
    t.push_back(seconds_since(t0));
  }
  return median(t);
}

struct PrepResult {
  std::string format;
  int64_t cols, T;
  double us;
};

void run(const Options& o) {
  const bool quick = o.quick;
  ThreadPool pool1(1), pool2(2);
  const auto bench_t0 = Clock::now();

  std::vector<Roofline> roof;
  for (int64_t bytes : {int64_t{8} << 20, int64_t{32} << 20, int64_t{1} << 30})
    for (ThreadPool* p : {&pool1, &pool2})
      roof.push_back(measure_roofline(bytes, *p, bytes > (int64_t{64} << 20) ? 3 : 20));

  struct Shape {
    int64_t rows, cols;
  };
  std::vector<Shape> shapes;
  for (const auto& s : o.shapes) shapes.push_back({s.first, s.second});
  const std::vector<int64_t> tokens = o.tokens;
  std::vector<Result> results;
  std::vector<PrepResult> preps;

  for (const Shape& sh : shapes) {
    const std::vector<float> wf = make_values(sh.rows * sh.cols, 1);
    for (codec::Format f : o.formats)
      for (WeightLayout layout : {WeightLayout::kCodec, WeightLayout::kPacked}) {
        if (layout == WeightLayout::kPacked && (!o.packed || !has_packed_layout(f))) continue;
        const codec::FormatInfo& info = codec::format_info(f);
        const std::string name =
            std::string(info.name) + (layout == WeightLayout::kPacked ? "/pk" : "");
        // Weights in a 64-byte-aligned buffer, as a .slm file mmaps them.
        AlignedVector<uint8_t> w;
        {
          const std::vector<uint8_t> codec_bytes =
              codec::quantize_ref(f, wf.data(), sh.rows, sh.cols);
          w.resize(codec_bytes.size());
          if (layout == WeightLayout::kPacked) {
            pack_rows(f, codec_bytes.data(), sh.rows, sh.cols, w.data());
          } else {
            std::memcpy(w.data(), codec_bytes.data(), codec_bytes.size());
          }
        }
        const double bytes = static_cast<double>(w.size());
        for (int64_t T : tokens) {
          for (ActPrecision prec : o.acts) {
            if (!info.quantized && prec != o.acts.front()) continue;  // float acts: no precision
            const std::string label =
                name + (info.quantized && prec == ActPrecision::kInt8 ? "/i8" : "");
            const std::vector<float> x = make_values(T * sh.cols, 2);
            Acts acts;
            {
              std::vector<double> t;
              for (int r = 0; r < (T == 1 ? 200 : 5); ++r) {
                const auto t0 = Clock::now();
                prepare_acts(f, x.data(), T, sh.cols, &acts, o.isa, layout, prec);
                t.push_back(seconds_since(t0));
              }
              if (sh.rows == 4096) preps.push_back({label, sh.cols, T, median(t) * 1e6});
            }
            std::vector<float> y(static_cast<size_t>(T * sh.rows));
            for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool2}) {
              // Aim at ~0.3 s per configuration (less with --quick), at least 3 repeats.
              const double flops = 2.0 * sh.rows * sh.cols * T;
              const double guess_s = std::max(bytes / 20e9, flops / 100e9) / (p ? 2 : 1);
              const int reps =
                  std::max(3, std::min(100, static_cast<int>((quick ? 0.08 : 0.3) / guess_s)));
              const double s = time_gemm(f, w, acts, y, sh.rows, p, o.isa, reps);
              results.push_back({label, sh.rows, sh.cols, T, p ? p->size() : 1, s * 1e3,
                                 bytes / s / 1e9, flops / s / 1e9});
              if (!o.json) {
                const Result& r = results.back();
                std::fprintf(stderr,
                             "  %-11s %5lld x %-5lld T=%-3lld %dt  %9.3f ms %7.2f GB/s %8.1f "
                             "GFLOP/s\n",
                             r.format.c_str(), static_cast<long long>(r.rows),
                             static_cast<long long>(r.cols), static_cast<long long>(r.T), r.threads,
                             r.ms, r.gbps, r.gflops);
              }
            }
          }
        }
      }
  }
  const double total_s = seconds_since(bench_t0);

  if (o.json) {
    std::printf("{\n  \"isa\": \"%s\",\n  \"load_average\": \"%s\",\n  \"seconds\": %.1f,\n",
                isa_name(o.isa), load_average().c_str(), total_s);
    std::printf("  \"roofline\": [\n");
    for (size_t i = 0; i < roof.size(); ++i)
      std::printf("    {\"bytes\": %lld, \"threads\": %d, \"gbps\": %.2f}%s\n",
                  static_cast<long long>(roof[i].bytes), roof[i].threads, roof[i].gbps,
                  i + 1 < roof.size() ? "," : "");
    std::printf("  ],\n  \"prepare_acts\": [\n");
    for (size_t i = 0; i < preps.size(); ++i)
      std::printf("    {\"format\": \"%s\", \"cols\": %lld, \"T\": %lld, \"us\": %.2f}%s\n",
                  preps[i].format.c_str(), static_cast<long long>(preps[i].cols),
                  static_cast<long long>(preps[i].T), preps[i].us, i + 1 < preps.size() ? "," : "");
    std::printf("  ],\n  \"gemm\": [\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "    {\"format\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"T\": %lld, "
          "\"threads\": %d, \"ms\": %.4f, \"gbps\": %.2f, \"gflops\": %.1f}%s\n",
          r.format.c_str(), static_cast<long long>(r.rows), static_cast<long long>(r.cols),
          static_cast<long long>(r.T), r.threads, r.ms, r.gbps, r.gflops,
          i + 1 < results.size() ? "," : "");
    }
    std::printf("  ]\n}\n");
    return;
  }

  std::printf("slmc_kernel_bench  isa=%s  load average %s  (%.0f s)\n\n", isa_name(o.isa),
              load_average().c_str(), total_s);
  std::printf("memory-read roofline (best of repeats, streaming sum)\n");
  std::printf("  %-10s %12s %12s\n", "buffer", "1 thread", "2 threads");
  for (size_t i = 0; i + 1 < roof.size(); i += 2)
    std::printf("  %-10s %7.1f GB/s %7.1f GB/s\n",
                (std::to_string(roof[i].bytes >> 20) + " MiB").c_str(), roof[i].gbps,
                roof[i + 1].gbps);
  std::printf("\nmatmul (median; GB/s = weight bytes streamed per call)\n");
  std::printf("  %-11s %-12s %5s | %9s %8s %8s | %9s %8s %8s\n", "format", "rows x cols", "T",
              "1t ms", "GB/s", "GFLOP/s", "2t ms", "GB/s", "GFLOP/s");
  for (size_t i = 0; i + 1 < results.size(); i += 2) {
    const Result &a = results[i], &b = results[i + 1];
    const std::string shape = std::to_string(a.rows) + "x" + std::to_string(a.cols);
    std::printf("  %-11s %-12s %5lld | %9.3f %8.2f %8.1f | %9.3f %8.2f %8.1f\n", a.format.c_str(),
                shape.c_str(), static_cast<long long>(a.T), a.ms, a.gbps, a.gflops, b.ms, b.gbps,
                b.gflops);
  }
  std::printf("\nprepare_acts (median, 1 thread)\n");
  for (const PrepResult& p : preps)
    std::printf("  %-11s cols=%-6lld T=%-4lld %9.2f us\n", p.format.c_str(),
                static_cast<long long>(p.cols), static_cast<long long>(p.T), p.us);
}

int main_impl(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--no-packed") {
      o.packed = false;
    } else if (a == "--acts" && i + 1 < argc) {
      o.acts.clear();
      const std::string list = argv[++i];
      size_t pos = 0;
      while (pos <= list.size()) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        ActPrecision p;
        if (!act_precision_from_name(list.substr(pos, comma - pos).c_str(), &p)) {
          std::fprintf(stderr, "unknown --acts '%s' (precise, int8)\n",
                       list.substr(pos, comma - pos).c_str());
          return 2;
        }
        o.acts.push_back(p);
        pos = comma + 1;
      }
    } else if (a == "--isa" && i + 1 < argc) {
      if (!isa_from_name(argv[++i], &o.isa)) {
        std::fprintf(stderr, "unknown --isa %s (scalar, avx2, avx512, amx)\n", argv[i]);
        return 2;
      }
      if (static_cast<int>(o.isa) > static_cast<int>(hardware_isa())) {
        std::fprintf(stderr, "--isa %s: this CPU supports up to %s\n", argv[i],
                     isa_name(hardware_isa()));
        return 2;
      }
    } else if (a == "--tokens" && i + 1 < argc) {
      o.tokens.clear();
      if (!parse_list(argv[++i], [&](const std::string& v) {
            const long long t = std::atoll(v.c_str());
            if (t <= 0) return false;
            o.tokens.push_back(t);
            return true;
          })) {
        std::fprintf(stderr, "bad --tokens %s (positive counts, comma-separated)\n", argv[i]);
        return 2;
      }
    } else if (a == "--shapes" && i + 1 < argc) {
      o.shapes.clear();
      if (!parse_list(argv[++i], [&](const std::string& v) {
            long long r = 0, c = 0;
            if (std::sscanf(v.c_str(), "%lldx%lld", &r, &c) != 2 || r <= 0 || c <= 0) return false;
            o.shapes.push_back({r, c});
            return true;
          })) {
        std::fprintf(stderr, "bad --shapes %s (ROWSxCOLS, comma-separated)\n", argv[i]);
        return 2;
      }
    } else if (a == "--formats" && i + 1 < argc) {
      std::string list = argv[++i];
      size_t pos = 0;
      while (pos <= list.size()) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        codec::Format f;
        const std::string name = list.substr(pos, comma - pos);
        if (!codec::format_from_name(name, &f)) {
          std::fprintf(stderr, "unknown format '%s' (%s)\n", name.c_str(),
                       codec::format_names().c_str());
          return 2;
        }
        o.formats.push_back(f);
        pos = comma + 1;
      }
    } else {
      std::fprintf(
          stderr,
          "usage: slmc_kernel_bench [--json] [--quick] [--no-packed] "
          "[--isa scalar|avx2|avx512|amx] [--acts precise,int8] [--tokens 1,8,128] "
          "[--shapes 4096x4096,4096x14336] [--formats %s]\n",
          codec::format_names().c_str());
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (o.formats.empty())
    for (const codec::FormatInfo& i : codec::all_formats()) o.formats.push_back(i.id);
  run(o);
  return 0;
}

}  // namespace
}  // namespace slmc::runtime

int main(int argc, char** argv) { return slmc::runtime::main_impl(argc, argv); }
