// slmc bench: runtime speed of an .slm artifact or GGUF file: prefill and decode tokens/s, model bytes, peak
// RSS, and the decode's effective GB/s beside the memory-read roofline measured in the same run.
#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include "compress/cli/backend.h"
#include "compress/cli/commands.h"
#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "export/runtime/decode_timing.h"
#include "export/runtime/roofline.h"

namespace slmc::cli {

namespace {
struct BenchOptions {
  std::string model;
  int64_t prompt_len = 128;
  int64_t gen = 64;
  int reps = 3;
  bool json = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_bench(const BenchOptions& o) {
  resolve_backend("runtime", o.model);  // a clear error for anything but .slm / .gguf
  RuntimeBackend rt(o.model);
  const runtime::Model& m = *rt.model;
  const ModelSpec& spec = m.spec();
  SLMC_CHECK(o.prompt_len + o.gen <= spec.max_seq, "--prompt-len ", o.prompt_len, " + --gen ",
             o.gen, " exceed the model's context ", spec.max_seq);
  const runtime::Isa isa = runtime::best_isa();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(spec.vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_len));
  for (int32_t& t : prompt) t = pick(rng);
  std::vector<float> logits(static_cast<size_t>(spec.vocab));

  runtime::Session session(m, *rt.pool, o.prompt_len + o.gen, isa);
  session.forward(prompt.data(), std::min<int64_t>(8, o.prompt_len), logits.data(), false);  // warm-up
  std::vector<double> prefill, decode;
  Progress bar("bench", o.reps, "rep");
  // As llama-bench: prefill of --prompt-len tokens (pp), and decode of --gen tokens from an
  // empty context (tg), timed separately.
  for (int r = 0; r < o.reps; ++r) {
    session.reset();
    const auto t0 = std::chrono::steady_clock::now();
    session.forward(prompt.data(), o.prompt_len, logits.data(), false);
    prefill.push_back(static_cast<double>(o.prompt_len) / seconds_since(t0));
    decode.push_back(runtime::timed_decode_tok_s(session, o.gen, [&](int64_t) { return pick(rng); },
                                                 logits.data()));
    bar.update(r + 1);
  }
  bar.finish();
  const double prefill_tps = median(prefill), decode_tps = median(decode);
  const double streamed_gb = static_cast<double>(m.bytes_per_token()) / 1e9;
  const double decode_gbps = streamed_gb * decode_tps;
  const double roof = runtime::measure_read_gbps(m.bytes_per_token(), *rt.pool);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  std::map<std::string, uint64_t> bytes_by_format;
  for (const auto& [f, b] : m.bytes_by_format()) bytes_by_format[f] += b;

  if (o.json) {
    nlohmann::json j = {{"model", o.model},
                        {"threads", rt.pool->size()},
                        {"isa", runtime::isa_name(isa)},
                        {"n_params", spec.n_params()},
                        {"model_bytes", m.file_bytes()},
                        {"bytes_by_format", bytes_by_format},
                        {"bytes_per_token", m.bytes_per_token()},
                        {"prompt_len", o.prompt_len},
                        {"gen", o.gen},
                        {"prefill_tok_s", prefill_tps},
                        {"decode_tok_s", decode_tps},
                        {"decode_gb_s", decode_gbps},
                        {"roofline_gb_s", roof},
                        {"roofline_tok_s", roof / streamed_gb},
                        {"peak_rss_mb", peak_rss_mb}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model          %s (%.1f M params, %s)\n", o.model.c_str(),
              static_cast<double>(spec.n_params()) / 1e6, family_name(spec.family));
  std::string mix;
  for (const auto& kv : bytes_by_format)
    mix += (mix.empty() ? "" : ", ") + kv.first + " " + std::to_string(kv.second / 1000000) + " MB";
  std::printf("weights        %.1f MB (%s); %.1f MB streamed per token\n",
              static_cast<double>(m.weight_bytes()) / 1e6, mix.c_str(), streamed_gb * 1e3);
  std::printf("threads        %d (%s)\n", rt.pool->size(), runtime::isa_name(isa));
  std::printf("prefill        %.1f tok/s (%lld tokens, median of %d)\n", prefill_tps,
              static_cast<long long>(o.prompt_len), o.reps);
  std::printf("decode         %.1f tok/s (%lld tokens, median of %d), %.2f ms/token\n", decode_tps,
              static_cast<long long>(o.gen), o.reps, 1e3 / decode_tps);
  std::printf("decode GB/s    %.1f effective; roofline %.1f GB/s measured now over %.0f MB "
              "(%.0f%% of it; bound %.1f tok/s)\n",
              decode_gbps, roof, streamed_gb * 1e3, 100 * decode_gbps / roof, roof / streamed_gb);
  std::printf("peak RSS       %.1f MB\n", peak_rss_mb);
}
}  // namespace

void setup_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand(
      "bench", "runtime speed of an .slm artifact or GGUF file (prefill, decode, memory)");
  sub->add_option("--model", o->model, ".slm artifact or GGUF file")->required()->check(CLI::ExistingFile);
  sub->add_option("--prompt-len", o->prompt_len, "prefill tokens")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--gen", o->gen, "decode tokens")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--reps", o->reps, "repetitions (median reported)")->capture_default_str()->check(CLI::Range(1, 100));
  sub->add_flag("--json", o->json, "machine-readable output on stdout");
  on_run(sub, [o] { run_bench(*o); });
}

}  // namespace slmc::cli
