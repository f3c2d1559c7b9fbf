// What `slmc run` leaves beside its artifacts: manifest.json and the report (runner.h).
#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/sha256.h"
#include "compress/recipe/runner.h"
#include "quantize/codec/formats.h"

namespace slmc {

namespace fs = std::filesystem;

const char* slmc_version() { return SLMC_VERSION; }

std::string sha256_path(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return sha256_file(path);
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file()) files.push_back(fs::relative(it->path(), path).generic_string());
  SLMC_CHECK(!ec, path, ": cannot list the directory: ", ec.message());
  std::sort(files.begin(), files.end());
  Sha256 h;
  for (const std::string& f : files)
    h.update(f + " " + sha256_file((fs::path(path) / f).string()) + "\n");
  return h.hex();
}

namespace {

nlohmann::json file_entry(const std::string& path) {
  return {{"path", path}, {"sha256", sha256_path(path)}};
}

nlohmann::json data_entry(const DataSpec& d) {
  nlohmann::json j = file_entry(d.path);
  j["samples"] = d.samples;
  j["seq_len"] = d.seq_len;
  j["seed"] = d.seed;
  return j;
}

uint64_t pass_bytes_after(const PassReport& p) {
  uint64_t b = 0;
  for (const TensorReport& t : p.tensors) b += t.bytes_after;
  return b;
}

}  // namespace

std::string manifest_json(const RunReport& r, const RunInput& in) {
  nlohmann::json m;
  m["slmc_version"] = slmc_version();
  if (!in.recipe_file.empty()) m["recipe"] = file_entry(in.recipe_file);
  m["inputs"]["model"] = file_entry(in.model_path);
  if (!in.calibration.path.empty()) m["inputs"]["calibration"] = data_entry(in.calibration);
  if (!in.eval.path.empty()) m["inputs"]["eval"] = data_entry(in.eval);
  m["stages"] = nlohmann::json::array();
  for (size_t i = 0; i < r.passes.size(); ++i) {
    const PassReport& p = r.passes[i];
    nlohmann::json s = {{"pass", p.pass},
                        {"options", p.options},
                        {"params_before", p.params_before},
                        {"params_after", p.params_after},
                        {"tensor_bytes_after", pass_bytes_after(p)},
                        {"zero_weights", p.model_zero},
                        {"matrix_weights", p.model_matrix_weights},
                        {"seconds", p.seconds},
                        {"peak_rss_bytes", p.peak_rss_bytes}};
    if (i < r.cached.size()) s["cached"] = static_cast<bool>(r.cached[i]);
    if (i < r.plan.size()) s["where"] = r.plan[i].where;
    m["stages"].push_back(std::move(s));
  }
  m["artifacts"] = nlohmann::json::array();
  for (const ExportReport& e : r.slm) {
    nlohmann::json a = file_entry(e.path);
    a["format"] = "slm";
    a["file_bytes"] = e.file_bytes;
    a["tensor_bytes"] = e.tensor_bytes;
    a["bits_per_weight"] = e.bits_per_weight;
    m["artifacts"].push_back(std::move(a));
  }
  for (const ExportReport& e : r.gguf) {
    nlohmann::json a = file_entry(e.path);
    a["format"] = "gguf";
    a["file_bytes"] = e.file_bytes;
    a["tensor_bytes"] = e.tensor_bytes;
    m["artifacts"].push_back(std::move(a));
  }
  for (const std::string& d : r.hf_dirs) {
    nlohmann::json a = file_entry(d);
    a["format"] = "hf";
    m["artifacts"].push_back(std::move(a));
  }
  m["params_original"] = r.params_original;
  m["params_compressed"] = r.params_compressed;
  if (r.has_eval) {
    const RunEval& e = r.eval;
    m["eval"] = {{"tokens", e.tokens},
                 {"ctx", e.ctx},
                 {"ppl_original", e.ppl_original},
                 {"ppl", e.compressed.ppl},
                 {"kl", e.compressed.kl_mean},
                 {"top1", e.compressed.top1},
                 {"backend", e.backend}};
  }
  if (r.decode_tok_s > 0) m["decode_tok_s"] = r.decode_tok_s;
  m["gates"] = nlohmann::json::array();
  for (const GateResult& g : r.gates)
    m["gates"].push_back({{"name", g.name},
                          {"limit", g.limit},
                          {"value", g.value},
                          {"passed", g.passed},
                          {"message", g.message}});
  m["seconds"] = r.seconds;
  return m.dump(2) + "\n";
}

report::RunReport to_report(const RunReport& r, const RunInput& in) {
  report::RunReport o;
  o.title = in.recipe_file.empty() ? r.model : in.recipe_file;
  o.version = slmc_version();
  if (r.has_eval) o.eval_data = str_cat(r.eval.data, " (", r.eval.tokens, " tokens, windows of ", r.eval.ctx, ")");
  for (size_t i = 0; i < r.passes.size(); ++i) {
    const PassReport& p = r.passes[i];
    std::string detail = p.options;
    std::replace(detail.begin(), detail.end(), '\n', ' ');
    o.stages.push_back({p.pass, detail, p.seconds, i < r.cached.size() && r.cached[i]});
  }
  for (const ExportReport& e : r.slm) o.stages.push_back({"export slm", e.path, e.seconds, false});
  for (const ExportReport& e : r.gguf) o.stages.push_back({"export gguf", e.path, e.seconds, false});
  for (const std::string& d : r.hf_dirs) o.stages.push_back({"export hf", d, 0, false});

  report::ModelPoint orig;
  orig.label = "original";
  orig.bytes = static_cast<double>(r.bytes_original);
  orig.params = r.params_original;
  if (r.has_eval) {
    orig.ppl = r.eval.ppl_original;
    orig.kl = 0;
    orig.top1 = 1;
  }
  o.points.push_back(orig);
  for (const StagePoint& sp : r.stage_points) {
    report::ModelPoint p;
    p.label = sp.label;
    p.bytes = sp.bytes;
    p.params = sp.params;
    p.sparsity = sp.sparsity;
    p.ppl = sp.eval.ppl;
    p.kl = sp.eval.kl_mean;
    p.top1 = sp.eval.top1;
    o.points.push_back(p);
  }
  const double sparsity =
      r.passes.empty() || r.passes.back().model_matrix_weights == 0
          ? 0.0
          : static_cast<double>(r.passes.back().model_zero) /
                static_cast<double>(r.passes.back().model_matrix_weights);
  auto artifact_point = [&](const ExportReport& e) {
    report::ModelPoint p;
    p.label = fs::path(e.path).filename().string();
    p.bytes = static_cast<double>(e.tensor_bytes);
    p.params = r.params_compressed;
    p.sparsity = sparsity;
    return p;
  };
  for (size_t i = 0; i < r.slm.size(); ++i) {
    report::ModelPoint p = artifact_point(r.slm[i]);
    if (i == 0 && r.has_eval) {  // the artifact the runtime measured
      p.ppl = r.eval.compressed.ppl;
      p.kl = r.eval.compressed.kl_mean;
      p.top1 = r.eval.compressed.top1;
    }
    o.points.push_back(p);
  }
  // A GGUF holds the same tensors as the .slm (packed ones byte for byte): same accuracy when
  // the tensor bytes agree, else not measured.
  for (const ExportReport& e : r.gguf) {
    report::ModelPoint p = artifact_point(e);
    if (!r.slm.empty() && r.has_eval && r.slm[0].tensor_bytes == e.tensor_bytes) {
      p.ppl = r.eval.compressed.ppl;
      p.kl = r.eval.compressed.kl_mean;
      p.top1 = r.eval.compressed.top1;
    }
    o.points.push_back(p);
  }

  // Per tensor of the first artifact: its format and bits; the error against the original is the
  // last pass's that changed it (a packed tensor is copied byte for byte, so the export's own
  // error is 0), else the export's rounding.
  std::map<std::string, const TensorReport*> last;
  std::map<std::string, double> err;
  for (const PassReport& p : r.passes)
    for (const TensorReport& t : p.tensors) {
      last[t.name] = &t;
      if (t.dist.n > 0) err[t.name] = t.dist.rel_l2;
    }
  const ExportReport* ex = !r.slm.empty() ? &r.slm[0] : !r.gguf.empty() ? &r.gguf[0] : nullptr;
  if (ex != nullptr)
    for (const TensorExport& t : ex->tensors) {
      if (t.shape.size() != 2) continue;  // norms and biases: always f32
      report::TensorRow row;
      row.name = t.name;
      row.format = codec::format_info(t.format).name;
      row.bits = t.n_weights ? 8.0 * static_cast<double>(t.bytes) / static_cast<double>(t.n_weights) : 0;
      const auto e = err.find(t.name);
      row.rel_l2 = e != err.end() ? e->second : t.rel_l2;
      const auto l = last.find(t.name);
      row.sparsity = l != last.end() ? l->second->sparsity() : 0;
      o.tensors.push_back(row);
    }
  for (const GateResult& g : r.gates) o.gates.push_back({g.name, g.limit, g.value, g.passed});
  o.notes = r.notes;
  for (const PassReport& p : r.passes)
    for (const std::string& n : p.notes) o.notes.push_back(p.pass + ": " + n);
  return o;
}

void write_run_outputs(const RunReport& r, const RunInput& in, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SLMC_CHECK(!ec, dir, ": cannot create the output directory: ", ec.message());
  write_file_atomically((fs::path(dir) / "manifest.json").string(), manifest_json(r, in));
  report::write_report(to_report(r, in), dir);
}

}  // namespace slmc
