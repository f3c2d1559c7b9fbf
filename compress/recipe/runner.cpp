#include "compress/recipe/runner.h"
#include "compress/recipe/stage_cache.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/sha256.h"
#include "compress/eval/compare.h"
#include "compress/eval/sources.h"
#include "compress/io/token_data.h"
#include "compress/model/transformer.h"
#include "export/gguf_export.h"
#include "export/runtime/decode_timing.h"
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

// An export path that cannot be written is refused before any work: its nearest existing folder
// must be a writable directory, and a file export must not name a directory.
void check_writable(const ExportSpec& e) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p = fs::absolute(e.path, ec);
  if (e.format != "hf")
    SLMC_CHECK(!fs::is_directory(p, ec), e.where, ": export path ", e.path, " is a directory");
  fs::path dir = p.parent_path();
  while (!dir.empty() && !fs::exists(dir, ec) && dir != dir.root_path()) dir = dir.parent_path();
  SLMC_CHECK(fs::is_directory(dir, ec), e.where, ": export path ", e.path, " cannot be written (",
             dir.string(), " is not a directory)");
  SLMC_CHECK(::access(dir.c_str(), W_OK) == 0, e.where, ": export path ", e.path,
             " cannot be written (", dir.string(), " is not writable)");
}

// A stage's output kept for the accuracy plot.
struct Snapshot {
  StagePoint point;
  LoadedModel model;
};
Snapshot snapshot(const std::string& label, const CompressedModel& m, const PassReport& rep) {
  Snapshot s;
  s.point.label = label;
  s.point.params = m.model.spec.n_params();
  for (const auto& [name, t] : m.model.tensors) {
    const auto p = m.packed.find(name);
    s.point.bytes += p != m.packed.end() ? static_cast<double>(p->second.bytes.size())
                                         : 4.0 * static_cast<double>(t.numel());
  }
  s.point.sparsity = rep.model_matrix_weights ? static_cast<double>(rep.model_zero) /
                                                    static_cast<double>(rep.model_matrix_weights)
                                              : 0.0;
  s.model = m.model;
  return s;
}

std::string stage_dir(const std::string& cache_dir, const std::string& key) {
  return (std::filesystem::path(cache_dir) / key).string();
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

std::vector<std::string> stage_keys(const RunInput& in) {
  std::vector<std::string> keys;
  if (in.cache_dir.empty()) return keys;
  const Tokenizer* tok = in.tokenizer.get();
  std::string prev = cache_key({"model", sha256_path(in.model_path), slmc_version()});
  std::string calib_hash;
  for (const RunStage& s : in.stages) {
    std::vector<std::string> parts = {prev, s.pass->name(), s.pass->resolved_options(),
                                      slmc_version()};
    if (s.pass->needs_calibration()) {
      if (calib_hash.empty())
        calib_hash = cache_key({sha256_path(in.calibration.path),
                                std::to_string(in.calibration.samples),
                                std::to_string(in.calibration.seq_len),
                                std::to_string(in.calibration.seed), tok ? tok->kind() : "",
                                tok ? sha256_hex(tok->blob()) : ""});
      parts.push_back(calib_hash);
    }
    prev = cache_key(parts);
    keys.push_back(prev);
  }
  return keys;
}

std::string stage_cache_dir(const RunInput& in, const std::string& key) {
  return stage_dir(in.cache_dir, key);
}

std::string plan_text(const std::vector<StagePlan>& plan, const RunInput& in) {
  const std::vector<std::string> keys = stage_keys(in);
  auto shape = [](const ModelSpec& s) {
    return str_cat(with_commas(static_cast<uint64_t>(s.n_params())), " params, ", s.n_layer(),
                   " layers, d_model ", s.d_model);
  };
  std::string out = str_cat("plan of ", in.stages.size(), " stage(s) on ", in.model_path, "\n");
  for (size_t i = 0; i < plan.size(); ++i) {
    const StagePlan& p = plan[i];
    bool cached = i < keys.size() && stage_cached(stage_dir(in.cache_dir, keys[i]));
    if (in.from_stage >= 0 && static_cast<int>(i) >= in.from_stage) cached = false;
    out += str_cat("  ", i + 1, ". ", p.pass, " (", p.where, ")", cached ? " [cached]" : "", "\n",
                   "       in:  ", shape(p.in), "\n       out: ", shape(p.out), "\n");
    for (const RunStage& s : in.stages)
      if (s.where == p.where) {
        std::string o = s.pass->resolved_options();
        for (size_t k = 0; (k = o.find('\n', k)) != std::string::npos && k + 1 < o.size(); k += 1)
          o.replace(k, 1, "\n         ");
        out += "       options: " + o + (o.empty() || o.back() == '\n' ? "" : "\n");
        break;
      }
  }
  for (const ExportSpec& e : in.exports) out += str_cat("  export ", e.format, " -> ", e.path, "\n");
  const Gates& g = in.gates;
  if (g.any()) {
    out += "  gates:";
    if (g.max_kl >= 0) out += str_cat(" max_kl ", g.max_kl);
    if (g.max_ppl_increase >= 0) out += str_cat(" max_ppl_increase ", g.max_ppl_increase);
    if (g.min_top1 >= 0) out += str_cat(" min_top1 ", g.min_top1);
    if (g.max_bytes >= 0) out += str_cat(" max_bytes ", g.max_bytes);
    if (g.min_decode_tok_s >= 0) out += str_cat(" min_decode_tok_s ", g.min_decode_tok_s);
    out += "\n";
  }
  return out;
}

std::vector<StagePlan> plan_run(const ModelSpec& spec, const RunInput& in) {
  SLMC_CHECK(!in.exports.empty(), "no output: give -o (or export: in the recipe)");
  for (const ExportSpec& e : in.exports) {
    SLMC_CHECK(!e.path.empty(), e.where, ": export path is empty");
    check_writable(e);
    SLMC_CHECK(e.format == "slm" || e.format == "hf" || e.format == "gguf", e.where,
               ": export format '", e.format, "' is not supported (supported: slm, gguf, hf)");
    if (e.format == "gguf")
      SLMC_CHECK(in.tokenizer != nullptr, e.where,
                 ": a GGUF file needs the model's tokenizer (llama.cpp reads it from the file)");
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
  const bool has_slm = std::any_of(in.exports.begin(), in.exports.end(),
                                   [](const ExportSpec& e) { return e.format == "slm"; });
  if (!has_slm && (in.gates.max_bytes >= 0 || in.gates.min_decode_tok_s >= 0))
    fail(in.gates.where, ": gates max_bytes and min_decode_tok_s measure an .slm: add an slm export");
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

  // The stage cache: a key per stage chained from the model's hash; the run resumes after the
  // last stage whose entry is complete.
  const std::vector<std::string> keys = stage_keys(in);
  size_t resume = 0;
  for (size_t i = 0; i < keys.size(); ++i)
    if (stage_cached(stage_dir(in.cache_dir, keys[i]))) resume = i + 1;
  if (in.from_stage >= 0) resume = std::min(resume, static_cast<size_t>(in.from_stage));
  const bool points = !in.eval.path.empty();  // keep every stage's output but the last
  std::vector<Snapshot> snaps;
  for (size_t i = 0; i < resume; ++i) {
    const std::string dir = stage_dir(in.cache_dir, keys[i]);
    const bool keep = points && i + 1 < in.stages.size();
    if (i + 1 == resume) {
      rep.passes.push_back(load_stage(dir, &m));
      if (keep) snaps.push_back(snapshot(str_cat(i + 1, ". ", rep.passes.back().pass), m, rep.passes.back()));
    } else if (keep) {
      CompressedModel s;
      rep.passes.push_back(load_stage(dir, &s));
      snaps.push_back(snapshot(str_cat(i + 1, ". ", rep.passes.back().pass), s, rep.passes.back()));
    } else {
      rep.passes.push_back(load_stage(dir, nullptr));
    }
    rep.cached.push_back(true);
    std::fprintf(stderr, "stage %zu/%zu %s (%s): cached (%s)\n", i + 1, in.stages.size(),
                 in.stages[i].pass->name().c_str(), in.stages[i].where.c_str(), dir.c_str());
  }
  if (resume > 0) {
    const ModelSpec want = rep.plan[resume - 1].out;
    SLMC_CHECK(m.model.spec.to_json() == want.to_json(), stage_dir(in.cache_dir, keys[resume - 1]),
               ": the cached model's spec is not the plan's; delete the folder");
  }

  CalibrationSet calib;
  PassContext ctx;
  ctx.threads = in.threads;
  bool calib_needed = false;
  for (size_t i = resume; i < in.stages.size(); ++i)
    calib_needed = calib_needed || in.stages[i].pass->needs_calibration();
  if (!in.calibration.path.empty() && (calib_needed || resume == 0)) {
    calib = load_calibration(in.calibration.path, tok, m.model.spec, in.calibration.samples,
                             in.calibration.seq_len, in.calibration.seed);
    ctx.calibration = &calib;
    std::fprintf(stderr, "calibration: %zu x %lld tokens from %s\n", calib.rows.size(),
                 static_cast<long long>(in.calibration.seq_len), in.calibration.path.c_str());
  }
  for (size_t i = resume; i < in.stages.size(); ++i) {
    const RunStage& s = in.stages[i];
    std::fprintf(stderr, "stage %zu/%zu %s (%s): running\n", i + 1, in.stages.size(),
                 s.pass->name().c_str(), s.where.c_str());
    rep.passes.push_back(run_pass(*s.pass, m, ctx));
    rep.cached.push_back(false);
    if (points && i + 1 < in.stages.size())
      snaps.push_back(snapshot(str_cat(i + 1, ". ", s.pass->name()), m, rep.passes.back()));
    if (!keys.empty()) save_stage(stage_dir(in.cache_dir, keys[i]), m, rep.passes.back());
  }
  rep.params_compressed = m.model.spec.n_params();

  std::string slm_path;
  for (const ExportSpec& e : in.exports) {
    if (e.format == "slm") {
      rep.slm.push_back(
          export_slm(m.model, codec::Format::kF32, tok, e.path, in.threads, &m.packed));
      if (slm_path.empty()) slm_path = e.path;
    } else if (e.format == "gguf") {
      rep.gguf.push_back(
          export_gguf(m.model, codec::Format::kF32, tok, e.path, in.threads, &m.packed));
    } else {
      const std::string note = save_hf_directory(e.path, m.model, tok);
      if (!note.empty()) rep.notes.push_back(note);
      if (!m.packed.empty())
        rep.notes.push_back(str_cat(e.path, ": quantized tensors are stored dequantized (fp32)"));
      rep.hf_dirs.push_back(e.path);
    }
  }
  if (!slm_path.empty() && in.gates.min_decode_tok_s >= 0)
    rep.decode_tok_s = measure_decode_tok_s(slm_path, in.threads);

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
    const size_t first_stage = models.size();
    std::vector<std::unique_ptr<Transformer>> stage_models;
    for (Snapshot& sn : snaps) {
      stage_models.push_back(std::make_unique<Transformer>(sn.model.spec, sn.model.tensors));
      sn.model = LoadedModel();
      models.push_back(torch_logits_source(*stage_models.back(), batch));
    }
    const LogitsSource ref_source = torch_logits_source(reference, batch);
    const Comparison c = compare_models(ref_source, models, spec.vocab, windows, "eval");
    ev.tokens = c.reference.n_tokens;
    ev.ppl_original = c.reference.ppl;
    ev.compressed = c.models[0];
    for (size_t k = 0; k < snaps.size(); ++k) {
      rep.stage_points.push_back(snaps[k].point);
      rep.stage_points.back().eval = c.models[first_stage + k];
    }
    if (first_stage > 1) {
      ev.has_torch_artifact = true;
      ev.torch_artifact = c.models[1];
      ev.ppl_agreement =
          std::fabs(ev.compressed.ppl - ev.torch_artifact.ppl) / ev.torch_artifact.ppl;
    }
  }
  evaluate_gates(rep, in.gates);
  rep.max_rss_bytes = peak_rss_bytes();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

void evaluate_gates(RunReport& rep, const Gates& g) {
  rep.gates.clear();
  rep.gate_failures.clear();
  // measured: the value compared; shown: how the message prints it.
  auto gate = [&](const char* name, double limit, double measured, bool passed,
                  const std::string& shown) {
    GateResult r{name, limit, measured, passed, str_cat(name, " ", limit, ": ", shown)};
    if (!passed) rep.gate_failures.push_back(r.message);
    rep.gates.push_back(std::move(r));
  };
  if (g.max_bytes >= 0) {
    SLMC_CHECK(!rep.slm.empty(), g.where, ": gate max_bytes needs an slm export");
    const uint64_t b = rep.slm[0].tensor_bytes;
    gate("max_bytes", static_cast<double>(g.max_bytes), static_cast<double>(b),
         static_cast<int64_t>(b) <= g.max_bytes, str_cat(b, " tensor bytes"));
  }
  if (g.min_decode_tok_s >= 0) {
    SLMC_CHECK(rep.decode_tok_s > 0, g.where, ": gate min_decode_tok_s needs an slm export");
    gate("min_decode_tok_s", g.min_decode_tok_s, rep.decode_tok_s,
         rep.decode_tok_s >= g.min_decode_tok_s, str_cat(rep.decode_tok_s, " tok/s"));
  }
  const bool acc = g.max_kl >= 0 || g.max_ppl_increase >= 0 || g.min_top1 >= 0;
  if (!acc) return;
  SLMC_CHECK(rep.has_eval, g.where, ": accuracy gates need data.eval in the recipe");
  const RunEval& ev = rep.eval;
  if (g.max_kl >= 0)
    gate("max_kl", g.max_kl, ev.compressed.kl_mean, ev.compressed.kl_mean <= g.max_kl,
         str_cat("KL ", ev.compressed.kl_mean));
  if (g.max_ppl_increase >= 0) {
    const double inc = ev.compressed.ppl / ev.ppl_original - 1;
    gate("max_ppl_increase", g.max_ppl_increase, inc, inc <= g.max_ppl_increase,
         str_cat("perplexity ", ev.ppl_original, " -> ", ev.compressed.ppl, " (", inc >= 0 ? "+" : "",
                 100 * inc, "%)"));
  }
  if (g.min_top1 >= 0)
    gate("min_top1", g.min_top1, ev.compressed.top1, ev.compressed.top1 >= g.min_top1,
         str_cat("top-1 ", ev.compressed.top1));
}

void check_gates(const RunReport& report, const Gates& gates) {
  if (report.gate_failures.empty()) return;
  std::string msg;
  for (const std::string& f : report.gate_failures) msg += (msg.empty() ? "" : "; ") + f;
  throw GateFailure(str_cat(gates.where, ": gate failed: ", msg));
}

double measure_decode_tok_s(const std::string& slm, int threads, int64_t gen, int reps) {
  runtime::ThreadPool pool(threads);
  const runtime::Model model(slm);
  const ModelSpec& spec = model.spec();
  gen = std::min<int64_t>(gen, spec.max_seq);
  SLMC_CHECK(gen >= 1 && reps >= 1, slm, ": decode speed needs at least one token and one run");
  std::vector<float> logits(static_cast<size_t>(spec.vocab));
  runtime::Session session(model, pool, gen);
  // Fixed token ids (the speed does not depend on them): a repeatable measurement.
  const auto token = [&](int64_t i) { return static_cast<int32_t>((i * 7919) % spec.vocab); };
  int32_t t = token(0);
  session.forward(&t, 1, logits.data(), false);  // warm-up
  std::vector<double> tps;
  for (int r = 0; r < reps; ++r)
    tps.push_back(runtime::timed_decode_tok_s(session, gen, token, logits.data()));
  std::sort(tps.begin(), tps.end());
  return tps[tps.size() / 2];
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
  for (const ExportReport& ex : gguf)
    out += str_cat("wrote ", ex.path, ": ", with_commas(ex.file_bytes), " bytes (", ex.container, ")\n");
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
  for (const GateResult& g : gates)
    out += str_cat("gate ", g.passed ? "passed" : "FAILED", ": ", g.message, "\n");
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
  out["gates"] = nlohmann::json::array();
  for (const GateResult& g : gates)
    out["gates"].push_back(
        {{"name", g.name}, {"limit", g.limit}, {"value", g.value}, {"passed", g.passed}});
  if (decode_tok_s > 0) out["decode_tok_s"] = decode_tok_s;
  out["gates_failed"] = gate_failures;
  out["max_rss_bytes"] = max_rss_bytes;
  out["seconds_total"] = seconds;
  return out.dump(2);
}

}  // namespace slmc
