#include "compress/cli/pipeline.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <unistd.h>

#include "compress/cli/backend.h"
#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/eval/evaluate.h"
#include "export/slm_export.h"
#include "quantize/quantize_pass.h"

namespace slmc::cli {

void register_builtin_passes() {
  static bool done = false;
  if (done) return;
  done = true;
  quant::register_quantize_pass();
}

CalibrationSet load_calibration(const std::string& path, const Tokenizer* tok,
                                const ModelSpec& spec, int64_t samples, int64_t seq_len,
                                uint64_t seed) {
  SLMC_CHECK(samples >= 1, "calibration: samples must be >= 1, got ", samples);
  SLMC_CHECK(seq_len >= 2, "calibration: seq_len must be >= 2, got ", seq_len);
  SLMC_CHECK(seq_len <= spec.max_seq, "calibration: seq_len ", seq_len,
             " exceeds the model's context ", spec.max_seq);
  const std::vector<int32_t> stream = load_token_stream(path, tok, spec.vocab);
  const int64_t per = seq_len - 1;  // each row is BOS + per tokens
  const int64_t n_windows = static_cast<int64_t>(stream.size()) / per;
  SLMC_CHECK(n_windows >= samples, path, ": calibration data too short: ", stream.size(),
             " tokens make ", n_windows, " windows of ", per, " tokens (+ BOS), but samples = ",
             samples, "; give more data or lower samples / seq_len");
  std::vector<int64_t> idx(static_cast<size_t>(n_windows));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(samples));
  std::sort(idx.begin(), idx.end());
  CalibrationSet c;
  c.origin = path;
  for (int64_t w : idx) {
    std::vector<int32_t> row;
    row.reserve(static_cast<size_t>(seq_len));
    row.push_back(static_cast<int32_t>(spec.bos_id));
    row.insert(row.end(), stream.begin() + w * per, stream.begin() + (w + 1) * per);
    c.rows.push_back(std::move(row));
  }
  return c;
}

namespace {

// Deletes a temporary file when it goes out of scope.
struct TempPath {
  std::string path;
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

}  // namespace

void run_pipeline(const PipelineInput& in) {
  const auto t0 = std::chrono::steady_clock::now();
  SLMC_CHECK(!in.out.empty(), "no output path (-o or export: in the recipe)");
  CompressedModel m;
  m.model = load_model(in.model_path);
  std::shared_ptr<Tokenizer> tok = resolve_tokenizer(in.model_path, in.tokenizer_path, false);
  m.tokenizer = tok;
  // The reference for the accuracy table: a second fp32 copy of the model, kept only when there is
  // a table to make.
  std::unique_ptr<const LoadedModel> original_copy;
  if (!in.eval.path.empty()) original_copy = std::make_unique<const LoadedModel>(m.model);

  bool need_calib = false;
  for (Pass* p : in.passes) {
    p->validate(m);
    need_calib = need_calib || p->needs_calibration();
  }
  CalibrationSet calib;
  PassContext ctx;
  ctx.threads = global_options().threads;
  if (!in.calibration.path.empty()) {
    calib = load_calibration(in.calibration.path, tok.get(), m.model.spec, in.calibration.samples,
                             in.calibration.seq_len, in.calibration.seed);
    ctx.calibration = &calib;
    std::fprintf(stderr, "calibration: %zu x %lld tokens from %s\n", calib.rows.size(),
                 static_cast<long long>(in.calibration.seq_len), in.calibration.path.c_str());
  } else if (need_calib) {
    fail("calibration data is required by this recipe's passes: give --calib DATA or "
         "data.calibration.path");
  }

  nlohmann::json out;
  out["model"] = in.model_path;
  for (Pass* p : in.passes) {
    const PassReport rep = p->run(m, ctx);
    if (in.json) {
      out["passes"].push_back(nlohmann::json::parse(rep.json()));
    } else {
      std::printf("== %s\n%s", rep.pass.c_str(), rep.options.c_str());
      std::printf("%s\n", rep.table().c_str());
    }
  }

  const ExportReport ex =
      export_slm(m.model, codec::Format::kF32, tok.get(), in.out, global_options().threads, &m.packed);
  if (in.json) {
    out["export"] = nlohmann::json::parse(export_report_json(ex));
  } else {
    std::printf("wrote %s: %s bytes (%s tensor bytes, %.3f bits/weight over %lld weights)\n",
                in.out.c_str(), with_commas(ex.file_bytes).c_str(),
                with_commas(ex.tensor_bytes).c_str(), ex.bits_per_weight,
                static_cast<long long>(ex.n_weights));
  }

  std::vector<std::string> failures;
  if (in.gates.max_bytes >= 0 && static_cast<int64_t>(ex.tensor_bytes) > in.gates.max_bytes)
    failures.push_back(str_cat("max_bytes ", in.gates.max_bytes, ": the artifact holds ",
                               ex.tensor_bytes, " tensor bytes"));

  if (!in.eval.path.empty()) {
    const LoadedModel& original = *original_copy;
    const ModelSpec& spec = original.spec;
    const int64_t ctx_len = std::min<int64_t>(in.eval.seq_len, spec.max_seq);
    const auto windows = load_eval_windows(in.eval.path, tok.get(), spec.vocab, ctx_len,
                                           static_cast<int32_t>(spec.bos_id));
    TempPath ref{(std::filesystem::temp_directory_path() /
                  ("slmc-ref-" + std::to_string(::getpid()) + ".h5")).string()};
    EvalOptions eo;
    eo.save_logits = ref.path;
    EvalResult base;
    {
      Transformer tf(original.spec, original.tensors);
      base = evaluate(tf, windows, eo);
    }
    eo.save_logits.clear();
    eo.ref_logits = ref.path;
    RuntimeBackend rt(in.out);
    const EvalResult q = evaluate(runtime_logits_source(rt, ctx_len), spec.vocab, windows, eo);
    EvalResult qt;
    {
      const LoadedModel art = load_model(in.out);
      Transformer tf(art.spec, art.tensors);
      qt = evaluate(tf, windows, eo);
    }
    const double orig_bytes = static_cast<double>(ex.n_weights) * 4.0;
    const double agree = std::fabs(q.ppl - qt.ppl) / qt.ppl;
    if (in.json) {
      out["eval"] = {{"data", in.eval.path},
                     {"tokens", q.n_tokens},
                     {"ctx", ctx_len},
                     {"original", {{"bytes", orig_bytes}, {"bits_per_weight", 32.0}, {"ppl", base.ppl}}},
                     {"quantized",
                      {{"bytes", ex.tensor_bytes},
                       {"bits_per_weight", ex.bits_per_weight},
                       {"ppl", q.ppl},
                       {"kl", q.kl_mean},
                       {"kl_p99", q.kl_p99},
                       {"top1", q.top1},
                       {"backend", "runtime"}}},
                     {"torch_same_artifact", {{"ppl", qt.ppl}, {"kl", qt.kl_mean}, {"top1", qt.top1}}},
                     {"ppl_agreement", agree}};
      // Flat copies with unique names, for scripts (bench/quant_bench.sh) that grep them.
      out["table_bytes"] = ex.tensor_bytes;
      out["table_bpw"] = ex.bits_per_weight;
      out["table_ppl_ref"] = base.ppl;
      out["table_ppl"] = q.ppl;
      out["table_ppl_torch"] = qt.ppl;
      out["table_kl"] = q.kl_mean;
      out["table_top1"] = q.top1;
    } else {
      std::printf("\naccuracy on %s (%lld tokens, windows of %lld), against the unquantized model\n",
                  in.eval.path.c_str(), static_cast<long long>(q.n_tokens),
                  static_cast<long long>(ctx_len));
      std::printf("  %-22s %14s %8s %10s %10s %8s\n", "model", "tensor bytes", "bpw", "ppl", "KL",
                  "top-1");
      std::printf("  %-22s %14s %8.3f %10.4f %10s %8s\n", "original (f32, torch)",
                  with_commas(static_cast<uint64_t>(orig_bytes)).c_str(), 32.0, base.ppl, "-", "-");
      std::printf("  %-22s %14s %8.3f %10.4f %10.6f %7.2f%%\n", "quantized (runtime)",
                  with_commas(ex.tensor_bytes).c_str(), ex.bits_per_weight, q.ppl, q.kl_mean,
                  100.0 * q.top1);
      std::printf("  %-22s %14s %8s %10.4f %10.6f %7.2f%%\n", "same artifact, torch", "", "",
                  qt.ppl, qt.kl_mean, 100.0 * qt.top1);
      std::printf("  runtime and LibTorch perplexity differ by %.3f%%\n", 100.0 * agree);
    }
    if (in.gates.max_kl >= 0 && q.kl_mean > in.gates.max_kl)
      failures.push_back(str_cat("max_kl ", in.gates.max_kl, ": KL is ", q.kl_mean));
    if (in.gates.max_ppl_increase >= 0 && q.ppl > base.ppl * (1 + in.gates.max_ppl_increase))
      failures.push_back(str_cat("max_ppl_increase ", in.gates.max_ppl_increase, ": perplexity ",
                                 base.ppl, " -> ", q.ppl));
    if (in.gates.min_top1 >= 0 && q.top1 < in.gates.min_top1)
      failures.push_back(str_cat("min_top1 ", in.gates.min_top1, ": top-1 is ", q.top1));
  } else if (in.gates.max_kl >= 0 || in.gates.max_ppl_increase >= 0 || in.gates.min_top1 >= 0) {
    fail(in.gates.where, ": accuracy gates need data.eval in the recipe");
  }
  if (in.json) {
    out["gates_failed"] = failures;
    out["max_rss_bytes"] = peak_rss_bytes();
    out["seconds_total"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s\n", out.dump(2).c_str());
  }
  if (!failures.empty()) {
    std::string msg;
    for (const std::string& f : failures) msg += (msg.empty() ? "" : "; ") + f;
    fail(in.gates.where, ": gate failed: ", msg);
  }
}

}  // namespace slmc::cli
