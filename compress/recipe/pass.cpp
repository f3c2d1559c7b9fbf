#include "compress/recipe/pass.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "compress/core/error.h"

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

int64_t CalibrationSet::n_tokens() const {
  int64_t n = 0;
  for (const auto& r : rows) n += static_cast<int64_t>(r.size());
  return n;
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

}  // namespace

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
  std::snprintf(buf, sizeof buf, "  %-28s %-14s %-8s %12s %9s %10s %8s %9s\n", "tensor", "shape",
                "format", "bytes", "rel_l2", "max_err", "zeroed", "out_err");
  os << buf;
  int64_t n = 0;
  uint64_t before = 0, after = 0;
  for (const TensorReport& t : tensors) {
    auto e = t.extra.find("out_err");
    std::string out_err = e == t.extra.end() ? "-" : std::to_string(e->second).substr(0, 8);
    std::snprintf(buf, sizeof buf, "  %-28s %-14s %-8s %12llu %9.5f %10.3g %7.2f%% %9s%s\n",
                  t.name.c_str(), shape_str(t.shape).c_str(), t.format.c_str(),
                  static_cast<unsigned long long>(t.bytes_after), t.dist.rel_l2, t.dist.max_abs,
                  100.0 * t.dist.zero_frac, out_err.c_str(),
                  t.fallback ? ("  [fallback: " + t.note + "]").c_str()
                             : (t.note.empty() ? "" : ("  " + t.note).c_str()));
    os << buf;
    n += t.n_weights;
    before += t.bytes_before;
    after += t.bytes_after;
  }
  std::snprintf(buf, sizeof buf,
                "  total: %zu tensors, %lld weights, %s -> %s (%.3f bits/weight), %.1f s, peak RSS %s\n",
                tensors.size(), static_cast<long long>(n), human_bytes(static_cast<double>(before)).c_str(),
                human_bytes(static_cast<double>(after)).c_str(),
                n ? 8.0 * static_cast<double>(after) / static_cast<double>(n) : 0.0, seconds,
                human_bytes(static_cast<double>(peak_rss_bytes)).c_str());
  os << buf;
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
  int64_t n = 0;
  uint64_t after = 0;
  for (const TensorReport& t : tensors) {
    nlohmann::json r;
    r["name"] = t.name;
    r["shape"] = t.shape;
    r["format"] = t.format;
    r["fallback"] = t.fallback;
    if (!t.note.empty()) r["note"] = t.note;
    r["n_weights"] = t.n_weights;
    r["bytes_before"] = t.bytes_before;
    r["bytes_after"] = t.bytes_after;
    r["rel_l2"] = t.dist.rel_l2;
    r["max_abs"] = t.dist.max_abs;
    r["zero_frac"] = t.dist.zero_frac;
    for (const auto& kv : t.extra) r[kv.first] = kv.second;
    j["tensors"].push_back(r);
    n += t.n_weights;
    after += t.bytes_after;
  }
  j["n_weights"] = n;
  j["bytes"] = after;
  j["bits_per_weight"] = n ? 8.0 * static_cast<double>(after) / static_cast<double>(n) : 0.0;
  return j.dump(2);
}

}  // namespace slmc
