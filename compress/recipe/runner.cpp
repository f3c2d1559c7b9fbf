#include "compress/recipe/runner.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/eval/compare.h"
#include "compress/eval/sources.h"
#include "compress/io/token_data.h"
#include "compress/model/transformer.h"
#include "export/runtime/model.h"

namespace slmc {

namespace {

// The file a tokenizer kind is read from beside a model (find_tokenizer_beside's names).
const char* tokenizer_file_name(const std::string& kind) {
  if (kind == "sentencepiece") return "tokenizer.model";
  if (kind == "llama2c") return "tokenizer.bin";
  if (kind == "byte") return "tokenizer.json";
  return nullptr;
}

}  // namespace

std::string save_hf_directory(const std::string& dir, const LoadedModel& m, const Tokenizer* tok) {
  save_hf_model(dir, m.spec, m.tensors);
  if (tok == nullptr) return str_cat(dir, ": no tokenizer written (the model had none)");
  const char* file = tokenizer_file_name(tok->kind());
  if (file == nullptr)
    return str_cat(dir, ": tokenizer kind '", tok->kind(),
                   "' has no file form here; pass --tokenizer when using the directory");
  const std::string path = (std::filesystem::path(dir) / file).string();
  if (tok->kind() == "byte" && tok->blob().empty()) {
    write_byte_tokenizer_json(path);
  } else {
    write_file_atomically(path, tok->blob());
  }
  return "";
}

std::vector<StagePlan> plan_run(const ModelSpec& spec, const RunInput& in) {
  SLMC_CHECK(!in.exports.empty(), "no output: give -o (or export: in the recipe)");
  for (const ExportSpec& e : in.exports) {
    SLMC_CHECK(!e.path.empty(), e.where, ": export path is empty");
    SLMC_CHECK(e.format == "slm" || e.format == "hf", e.where, ": export format '", e.format,
               "' is not supported (supported: slm, hf)");
  }
  std::vector<StagePlan> plan;
  ModelSpec cur = spec;
  const RunStage* needs_calib = nullptr;
  const RunStage* packed_by = nullptr;
  for (const RunStage& s : in.stages) {
    SLMC_CHECK(s.pass != nullptr, s.where, ": stage without a pass");
    if (s.pass->rewrites_weights() && packed_by != nullptr)
      fail(s.where, ": stage '", s.pass->name(), "' rewrites weights, but the stage at ",
           packed_by->where, " ('", packed_by->pass->name(),
           "') already stored them quantized; put '", s.pass->name(), "' before it");
    StagePlan p;
    p.pass = s.pass->name();
    p.where = s.where;
    p.in = cur;
    p.out = s.pass->output_spec(cur);
    p.out.validate();
    cur = p.out;
    plan.push_back(std::move(p));
    if (s.pass->packs_tensors() && packed_by == nullptr) packed_by = &s;
    if (s.pass->needs_calibration() && needs_calib == nullptr) needs_calib = &s;
  }
  // An HF directory must be expressible as a config.json: checked on the final spec up front
  // (hf_config_json throws naming what it cannot express).
  for (const ExportSpec& e : in.exports)
    if (e.format == "hf") {
      try {
        (void)hf_config_json(cur);
      } catch (const Error& err) {
        fail(e.where, ": cannot write ", e.path, " as a Hugging Face directory: ", err.what());
      }
    }
  if (needs_calib != nullptr && in.calibration.path.empty())
    fail(needs_calib->where, ": stage '", needs_calib->pass->name(),
         "' needs calibration data: give --calib DATA or data.calibration.path");
  if (in.eval.path.empty() &&
      (in.gates.max_kl >= 0 || in.gates.max_ppl_increase >= 0 || in.gates.min_top1 >= 0))
    fail(in.gates.where, ": accuracy gates need data.eval in the recipe");
  return plan;
}

RunReport run_recipe(const RunInput& in) {
  const auto t0 = std::chrono::steady_clock::now();
  RunReport rep;
  rep.model = in.model_path;
  CompressedModel m;
  m.model = load_model(in.model_path);
  m.tokenizer = in.tokenizer;
  const Tokenizer* tok = in.tokenizer.get();
  rep.plan = plan_run(m.model.spec, in);
  rep.params_original = m.model.spec.n_params();
  for (const auto& kv : m.model.tensors)
    rep.bytes_original += 4 * static_cast<uint64_t>(kv.second.numel());
  // The reference for the accuracy table: a second fp32 copy of the model, kept only when there
  // is a table to make.
  std::unique_ptr<const LoadedModel> original;
  if (!in.eval.path.empty()) original = std::make_unique<const LoadedModel>(m.model);

  CalibrationSet calib;
  PassContext ctx;
  ctx.threads = in.threads;
  if (!in.calibration.path.empty()) {
    calib = load_calibration(in.calibration.path, tok, m.model.spec, in.calibration.samples,
                             in.calibration.seq_len, in.calibration.seed);
    ctx.calibration = &calib;
    std::fprintf(stderr, "calibration: %zu x %lld tokens from %s\n", calib.rows.size(),
                 static_cast<long long>(in.calibration.seq_len), in.calibration.path.c_str());
  }
  for (const RunStage& s : in.stages) rep.passes.push_back(run_pass(*s.pass, m, ctx));
  rep.params_compressed = m.model.spec.n_params();

  std::string slm_path;
  for (const ExportSpec& e : in.exports) {
    if (e.format == "slm") {
      rep.slm.push_back(
          export_slm(m.model, codec::Format::kF32, tok, e.path, in.threads, &m.packed));
      if (slm_path.empty()) slm_path = e.path;
    } else {
      const std::string note = save_hf_directory(e.path, m.model, tok);
      if (!note.empty()) rep.notes.push_back(note);
      if (!m.packed.empty())
        rep.notes.push_back(str_cat(e.path, ": quantized tensors are stored dequantized (fp32)"));
      rep.hf_dirs.push_back(e.path);
    }
  }
  if (!rep.slm.empty() && in.gates.max_bytes >= 0 &&
      static_cast<int64_t>(rep.slm[0].tensor_bytes) > in.gates.max_bytes)
    rep.gate_failures.push_back(str_cat("max_bytes ", in.gates.max_bytes, ": the artifact holds ",
                                        rep.slm[0].tensor_bytes, " tensor bytes"));

  if (original) {
    const ModelSpec spec = original->spec;
    RunEval& ev = rep.eval;
    rep.has_eval = true;
    ev.data = in.eval.path;
    ev.ctx = std::min<int64_t>(in.eval.seq_len, spec.max_seq);
    const std::vector<Window> windows =
        load_eval_windows(in.eval.path, tok, spec.vocab, ev.ctx, static_cast<int32_t>(spec.bos_id));
    const int64_t batch = EvalOptions().batch;
    const Transformer reference(original->spec, original->tensors);
    original.reset();
    std::vector<LogitsSource> models;
    std::unique_ptr<runtime::ThreadPool> pool;
    std::unique_ptr<runtime::Model> rt;
    std::unique_ptr<Transformer> artifact;
    if (!slm_path.empty()) {
      pool = std::make_unique<runtime::ThreadPool>(in.threads);
      rt = std::make_unique<runtime::Model>(slm_path);
      models.push_back(runtime_logits_source(*rt, *pool, ev.ctx));
      const LoadedModel art = load_model(slm_path);
      artifact = std::make_unique<Transformer>(art.spec, art.tensors);
      models.push_back(torch_logits_source(*artifact, batch));
      ev.backend = "runtime";
    } else {
      artifact = std::make_unique<Transformer>(m.model.spec, m.model.tensors);
      models.push_back(torch_logits_source(*artifact, batch));
      ev.backend = "torch";
    }
    const LogitsSource ref_source = torch_logits_source(reference, batch);
    const Comparison c = compare_models(ref_source, models, spec.vocab, windows, "eval");
    ev.tokens = c.reference.n_tokens;
    ev.ppl_original = c.reference.ppl;
    ev.compressed = c.models[0];
    if (c.models.size() > 1) {
      ev.has_torch_artifact = true;
      ev.torch_artifact = c.models[1];
      ev.ppl_agreement =
          std::fabs(ev.compressed.ppl - ev.torch_artifact.ppl) / ev.torch_artifact.ppl;
    }
    const Gates& g = in.gates;
    if (g.max_kl >= 0 && ev.compressed.kl_mean > g.max_kl)
      rep.gate_failures.push_back(str_cat("max_kl ", g.max_kl, ": KL is ", ev.compressed.kl_mean));
    if (g.max_ppl_increase >= 0 && ev.compressed.ppl > ev.ppl_original * (1 + g.max_ppl_increase))
      rep.gate_failures.push_back(str_cat("max_ppl_increase ", g.max_ppl_increase, ": perplexity ",
                                          ev.ppl_original, " -> ", ev.compressed.ppl));
    if (g.min_top1 >= 0 && ev.compressed.top1 < g.min_top1)
      rep.gate_failures.push_back(
          str_cat("min_top1 ", g.min_top1, ": top-1 is ", ev.compressed.top1));
  }
  rep.max_rss_bytes = peak_rss_bytes();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

void check_gates(const RunReport& report, const Gates& gates) {
  if (report.gate_failures.empty()) return;
  std::string msg;
  for (const std::string& f : report.gate_failures) msg += (msg.empty() ? "" : "; ") + f;
  fail(gates.where, ": gate failed: ", msg);
}

std::string RunReport::text() const {
  std::string out;
  char buf[512];
  for (const PassReport& p : passes) out += "== " + p.pass + "\n" + p.options + p.table() + "\n";
  for (const ExportReport& ex : slm) {
    std::snprintf(buf, sizeof buf,
                  "wrote %s: %s bytes (%s tensor bytes, %.3f bits/weight over %lld weights)\n",
                  ex.path.c_str(), with_commas(ex.file_bytes).c_str(),
                  with_commas(ex.tensor_bytes).c_str(), ex.bits_per_weight,
                  static_cast<long long>(ex.n_weights));
    out += buf;
  }
  for (const std::string& d : hf_dirs) out += "wrote " + d + " (Hugging Face directory)\n";
  for (const std::string& n : notes) out += "note: " + n + "\n";
  if (has_eval) {
    const RunEval& e = eval;
    std::snprintf(buf, sizeof buf,
                  "\naccuracy on %s (%lld tokens, windows of %lld), against the original model\n",
                  e.data.c_str(), static_cast<long long>(e.tokens), static_cast<long long>(e.ctx));
    out += buf;
    std::snprintf(buf, sizeof buf, "  %-24s %12s %14s %8s %10s %10s %8s\n", "model", "params",
                  "tensor bytes", "bpw", "ppl", "KL", "top-1");
    out += buf;
    std::snprintf(buf, sizeof buf, "  %-24s %12s %14s %8.3f %10.4f %10s %8s\n",
                  "original (f32, torch)",
                  with_commas(static_cast<uint64_t>(params_original)).c_str(),
                  with_commas(bytes_original).c_str(), 32.0, e.ppl_original, "-", "-");
    out += buf;
    const std::string bytes = slm.empty() ? std::string("-") : with_commas(slm[0].tensor_bytes);
    const double bpw = slm.empty() ? 32.0 : slm[0].bits_per_weight;
    std::snprintf(buf, sizeof buf, "  %-24s %12s %14s %8.3f %10.4f %10.6f %7.2f%%\n",
                  ("compressed (" + e.backend + ")").c_str(),
                  with_commas(static_cast<uint64_t>(params_compressed)).c_str(), bytes.c_str(), bpw,
                  e.compressed.ppl, e.compressed.kl_mean, 100.0 * e.compressed.top1);
    out += buf;
    if (e.has_torch_artifact) {
      std::snprintf(buf, sizeof buf, "  %-24s %12s %14s %8s %10.4f %10.6f %7.2f%%\n",
                    "same artifact, torch", "", "", "", e.torch_artifact.ppl,
                    e.torch_artifact.kl_mean, 100.0 * e.torch_artifact.top1);
      out += buf;
      std::snprintf(buf, sizeof buf, "  runtime and LibTorch perplexity differ by %.3f%%\n",
                    100.0 * e.ppl_agreement);
      out += buf;
    }
  }
  return out;
}

std::string RunReport::json() const {
  nlohmann::json out;
  out["model"] = model;
  out["passes"] = nlohmann::json::array();
  for (const PassReport& p : passes) out["passes"].push_back(nlohmann::json::parse(p.json()));
  for (const StagePlan& p : plan)
    out["plan"].push_back({{"pass", p.pass},
                           {"where", p.where},
                           {"params_in", p.in.n_params()},
                           {"params_out", p.out.n_params()},
                           {"n_layer_out", p.out.n_layer()}});
  if (!slm.empty()) out["export"] = nlohmann::json::parse(export_report_json(slm[0]));
  out["hf_dirs"] = hf_dirs;
  out["notes"] = notes;
  out["params_original"] = params_original;
  out["params_compressed"] = params_compressed;
  if (has_eval) {
    const RunEval& e = eval;
    const uint64_t bytes =
        slm.empty() ? 4 * static_cast<uint64_t>(params_compressed) : slm[0].tensor_bytes;
    const double bpw = slm.empty() ? 32.0 : slm[0].bits_per_weight;
    out["eval"] = {{"data", e.data},
                   {"tokens", e.tokens},
                   {"ctx", e.ctx},
                   {"original",
                    {{"params", params_original},
                     {"bytes", bytes_original},
                     {"bits_per_weight", 32.0},
                     {"ppl", e.ppl_original}}},
                   {"compressed",
                    {{"params", params_compressed},
                     {"bytes", bytes},
                     {"bits_per_weight", bpw},
                     {"ppl", e.compressed.ppl},
                     {"kl", e.compressed.kl_mean},
                     {"kl_p99", e.compressed.kl_p99},
                     {"top1", e.compressed.top1},
                     {"backend", e.backend}}}};
    if (e.has_torch_artifact) {
      out["eval"]["torch_same_artifact"] = {{"ppl", e.torch_artifact.ppl},
                                            {"kl", e.torch_artifact.kl_mean},
                                            {"top1", e.torch_artifact.top1}};
      out["eval"]["ppl_agreement"] = e.ppl_agreement;
    }
    // Flat copies with unique names, for scripts (bench/*.sh) that grep them.
    out["table_bytes"] = bytes;
    out["table_bpw"] = bpw;
    out["table_params"] = params_compressed;
    out["table_ppl_ref"] = e.ppl_original;
    out["table_ppl"] = e.compressed.ppl;
    out["table_ppl_torch"] = e.has_torch_artifact ? e.torch_artifact.ppl : e.compressed.ppl;
    out["table_kl"] = e.compressed.kl_mean;
    out["table_top1"] = e.compressed.top1;
  }
  if (!passes.empty()) {
    const PassReport& last = passes.back();
    out["table_sparsity"] =
        last.model_matrix_weights
            ? static_cast<double>(last.model_zero) / static_cast<double>(last.model_matrix_weights)
            : 0.0;
  }
  out["gates_failed"] = gate_failures;
  out["max_rss_bytes"] = max_rss_bytes;
  out["seconds_total"] = seconds;
  return out.dump(2);
}

}  // namespace slmc
