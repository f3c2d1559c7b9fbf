#include "compress/recipe/pass.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <tuple>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"

namespace slmc {

void CompressedModel::set_packed(const std::string& name, codec::QTensor q,
                                 std::vector<float> dequant) {
  auto it = model.tensors.find(name);
  SLMC_CHECK(it != model.tensors.end(), "set_packed: model has no tensor ", name);
  SLMC_CHECK(static_cast<int64_t>(dequant.size()) == it->second.numel(), "set_packed: ", name,
             " has ", it->second.numel(), " values, got ", dequant.size());
  SLMC_CHECK(q.shape == it->second.shape, "set_packed: ", name, " shape ", shape_str(q.shape),
             " differs from the model's ", it->second.shape_str());
  it->second.data = std::move(dequant);
  packed[name] = std::move(q);
}

int64_t SparsityMask::n_pruned() const {
  int64_t n = 0;
  for (uint8_t p : pruned) n += p != 0;
  return n;
}

std::string SparsityMask::pattern() const {
  return n > 0 ? str_cat(n, ":", m) : std::string("unstructured");
}

void CompressedModel::add_mask(const std::string& name, SparsityMask mask) {
  auto it = model.tensors.find(name);
  SLMC_CHECK(it != model.tensors.end(), "add_mask: model has no tensor ", name);
  SLMC_CHECK(mask.shape == it->second.shape &&
                 static_cast<int64_t>(mask.pruned.size()) == it->second.numel(),
             "add_mask: mask of ", name, " has shape ", shape_str(mask.shape), " and ",
             mask.pruned.size(), " entries, the tensor is ", it->second.shape_str());
  auto old = masks.find(name);
  if (old != masks.end()) {
    for (size_t i = 0; i < mask.pruned.size(); ++i) mask.pruned[i] |= old->second.pruned[i];
    if (old->second.n != mask.n || old->second.m != mask.m) mask.n = mask.m = 0;
  }
  std::vector<float>& v = it->second.data;
  for (size_t i = 0; i < v.size(); ++i)
    if (mask.pruned[i]) v[i] = 0.0f;
  masks[name] = std::move(mask);
}

void CompressedModel::check_masks() const {
  for (const auto& [name, mask] : masks) {
    auto it = model.tensors.find(name);
    SLMC_CHECK(it != model.tensors.end() && it->second.shape == mask.shape, "sparsity mask of ",
               name, " ", shape_str(mask.shape), " does not match the model's tensor");
    const std::vector<float>& v = it->second.data;
    int64_t bad = 0;
    for (size_t i = 0; i < v.size(); ++i) bad += mask.pruned[i] && v[i] != 0.0f;
    SLMC_CHECK(bad == 0, name, ": ", bad, " pruned weights are no longer exactly zero");
    auto p = packed.find(name);
    if (p == packed.end()) continue;
    const std::vector<float> dec = codec::dequantize_ref(
        p->second.format, p->second.bytes.data(), mask.shape[0], mask.shape[1]);
    for (size_t i = 0; i < dec.size(); ++i) bad += mask.pruned[i] && dec[i] != 0.0f;
    SLMC_CHECK(bad == 0, name, ": ", bad, " pruned weights decode to non-zero values from its ",
               codec::format_info(p->second.format).name, " bytes");
  }
}

void TensorReport::count_zeros(const std::vector<float>& values) {
  n_zero = 0;
  for (float v : values) n_zero += v == 0.0f;
}

namespace {

struct Entry {
  std::string about;
  PassFactory factory;
};

std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r;
  return r;
}

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

// Exactly zero weights and all weights over the model's 2-D tensors.
std::pair<int64_t, int64_t> matrix_zeros(const LoadedModel& m) {
  int64_t zero = 0, n = 0;
  for (const auto& [name, t] : m.tensors) {
    if (t.shape.size() != 2) continue;
    n += t.numel();
    for (float v : t.data) zero += v == 0.0f;
  }
  return {zero, n};
}

}  // namespace

const CalibrationSet& require_calibration(const PassContext& ctx, const ModelSpec& spec,
                                          const std::string& where, const std::string& what) {
  SLMC_CHECK(ctx.calibration != nullptr && !ctx.calibration->rows.empty(), where, ": ", what,
             " needs calibration data (--calib DATA or data.calibration in the recipe)");
  for (const auto& r : ctx.calibration->rows)
    for (int32_t id : r)
      SLMC_CHECK(id >= 0 && id < spec.vocab, ctx.calibration->origin, ": token id ", id,
                 " is outside the model's vocab [0, ", spec.vocab, ")");
  return *ctx.calibration;
}

PassReport run_pass(Pass& p, CompressedModel& m, PassContext& ctx) {
  const ModelSpec want = p.output_spec(m.model.spec);
  const int64_t params_before = m.model.spec.n_params();
  PassReport rep = p.run(m, ctx);
  SLMC_CHECK(m.model.spec.to_json() == want.to_json(), "pass ", p.name(),
             " produced a model whose spec differs from the one it stated before running");
  check_tensors(m.model.spec, m.model.tensors, p.name() + " output");
  m.check_masks();
  rep.params_before = params_before;
  rep.params_after = m.model.spec.n_params();
  std::tie(rep.model_zero, rep.model_matrix_weights) = matrix_zeros(m.model);
  return rep;
}

std::string OptionOrigins::at(const std::string& key) const {
  auto it = where.find(key);
  if (it != where.end()) return it->second;
  return stage.empty() ? pass : stage;
}

OptionOrigins OptionOrigins::from_yaml(const std::string& pass, const std::string& file,
                                       const YAML::Node& node) {
  OptionOrigins o;
  o.pass = pass;
  o.stage = yaml_where(file, node);
  for (const auto& kv : node) {
    const std::string k = kv.first.as<std::string>();
    o.where[k] = yaml_where(file, kv.second) + ": key '" + k + "'";
    o.given.insert(k);
  }
  return o;
}

OptionOrigins OptionOrigins::from_flags(const std::string& pass,
                                        std::map<std::string, std::string> where,
                                        std::set<std::string> given) {
  OptionOrigins o;
  o.pass = pass;
  o.where = std::move(where);
  o.given = std::move(given);
  return o;
}

void register_pass(const std::string& name, const std::string& about, PassFactory factory) {
  registry()[name] = Entry{about, std::move(factory)};
}

std::unique_ptr<Pass> make_pass(const std::string& name, const std::string& file,
                                const YAML::Node& options, const std::string& where) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& kv : registry()) known += (known.empty() ? "" : ", ") + kv.first;
    fail(where, ": unknown stage '", name, "' (known: ", known.empty() ? "none" : known, ")");
  }
  return it->second.factory(file, options);
}

std::vector<std::pair<std::string, std::string>> registered_passes() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& kv : registry()) out.emplace_back(kv.first, kv.second.about);
  return out;
}

int64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

std::string PassReport::table() const {
  std::ostringstream os;
  char buf[512];
  std::snprintf(buf, sizeof buf, "  %-28s %-14s %-8s %12s %9s %10s %8s %8s %9s\n", "tensor",
                "shape", "format", "bytes", "rel_l2", "max_err", "zeroed", "sparse", "out_err");
  os << buf;
  int64_t n = 0, zero = 0;
  uint64_t before = 0, after = 0;
  for (const TensorReport& t : tensors) {
    auto e = t.extra.find("out_err");
    std::string out_err = e == t.extra.end() ? "-" : std::to_string(e->second).substr(0, 8);
    std::snprintf(buf, sizeof buf, "  %-28s %-14s %-8s %12llu %9.5f %10.3g %7.2f%% %7.2f%% %9s%s\n",
                  t.name.c_str(), shape_str(t.shape).c_str(), t.format.c_str(),
                  static_cast<unsigned long long>(t.bytes_after), t.dist.rel_l2, t.dist.max_abs,
                  100.0 * t.dist.zero_frac, 100.0 * t.sparsity(), out_err.c_str(),
                  t.fallback ? ("  [fallback: " + t.note + "]").c_str()
                             : (t.note.empty() ? "" : ("  " + t.note).c_str()));
    os << buf;
    n += t.n_weights;
    zero += t.n_zero;
    before += t.bytes_before;
    after += t.bytes_after;
  }
  std::snprintf(buf, sizeof buf,
                "  total: %zu tensors, %lld weights (%.2f%% exactly zero), %s -> %s (%.3f "
                "bits/weight), %.1f s, peak RSS %s\n",
                tensors.size(), static_cast<long long>(n),
                n ? 100.0 * static_cast<double>(zero) / static_cast<double>(n) : 0.0,
                human_bytes(static_cast<double>(before)).c_str(),
                human_bytes(static_cast<double>(after)).c_str(),
                n ? 8.0 * static_cast<double>(after) / static_cast<double>(n) : 0.0, seconds,
                human_bytes(static_cast<double>(peak_rss_bytes)).c_str());
  os << buf;
  if (params_before > 0) {
    std::snprintf(buf, sizeof buf,
                  "  model: %lld -> %lld parameters; %lld of %lld matrix weights exactly zero "
                  "(%.2f%%)\n",
                  static_cast<long long>(params_before), static_cast<long long>(params_after),
                  static_cast<long long>(model_zero), static_cast<long long>(model_matrix_weights),
                  model_matrix_weights ? 100.0 * static_cast<double>(model_zero) /
                                             static_cast<double>(model_matrix_weights)
                                       : 0.0);
    os << buf;
  }
  for (const std::string& note : notes) os << "  note: " << note << "\n";
  return os.str();
}

std::string PassReport::json() const {
  nlohmann::json j;
  j["pass"] = pass;
  j["options"] = options;
  j["seconds"] = seconds;
  j["peak_rss_bytes"] = peak_rss_bytes;
  j["notes"] = notes;
  int64_t n = 0, zero = 0;
  uint64_t after = 0;
  j["tensors"] = nlohmann::json::array();
  for (const TensorReport& t : tensors) {
    nlohmann::json r;
    r["name"] = t.name;
    r["shape"] = t.shape;
    r["format"] = t.format;
    r["fallback"] = t.fallback;
    if (!t.note.empty()) r["note"] = t.note;
    r["n_weights"] = t.n_weights;
    r["n_zero"] = t.n_zero;
    r["sparsity"] = t.sparsity();
    r["bytes_before"] = t.bytes_before;
    r["bytes_after"] = t.bytes_after;
    r["rel_l2"] = t.dist.rel_l2;
    r["max_abs"] = t.dist.max_abs;
    r["zero_frac"] = t.dist.zero_frac;
    for (const auto& kv : t.extra) r[kv.first] = kv.second;
    j["tensors"].push_back(r);
    n += t.n_weights;
    zero += t.n_zero;
    after += t.bytes_after;
  }
  j["n_weights"] = n;
  j["n_zero"] = zero;
  j["sparsity"] = n ? static_cast<double>(zero) / static_cast<double>(n) : 0.0;
  j["bytes"] = after;
  j["bits_per_weight"] = n ? 8.0 * static_cast<double>(after) / static_cast<double>(n) : 0.0;
  j["params_before"] = params_before;
  j["params_after"] = params_after;
  j["model_zero"] = model_zero;
  j["model_matrix_weights"] = model_matrix_weights;
  j["model_sparsity"] = model_matrix_weights ? static_cast<double>(model_zero) /
                                                   static_cast<double>(model_matrix_weights)
                                             : 0.0;
  return j.dump(2);
}

}  // namespace slmc
