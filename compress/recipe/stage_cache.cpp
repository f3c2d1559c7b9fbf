#include "compress/recipe/stage_cache.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/json_util.h"
#include "compress/core/sha256.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "export/format/slm_format.h"

namespace slmc {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModel = "model.slm";  // spec + every tensor in fp32
constexpr const char* kSide = "side.bin";    // packed codec bytes and masks, back to back
constexpr const char* kIndex = "stage.json"; // the report and where side.bin's parts are


nlohmann::json number(double v) {  // JSON has no inf/nan: kept as strings
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}
double read_number(const nlohmann::json& v, const std::string& what) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  return checked_json::get_number(v, what, -1e300, 1e300);
}

nlohmann::json report_json(const PassReport& r) {
  nlohmann::json t = nlohmann::json::array();
  for (const TensorReport& x : r.tensors) {
    nlohmann::json extra = nlohmann::json::object();
    for (const auto& [k, v] : x.extra) extra[k] = number(v);
    t.push_back({{"name", x.name},
                 {"shape", x.shape},
                 {"format", x.format},
                 {"fallback", x.fallback},
                 {"note", x.note},
                 {"n_weights", x.n_weights},
                 {"n_zero", x.n_zero},
                 {"bytes_before", x.bytes_before},
                 {"bytes_after", x.bytes_after},
                 {"dist",
                  {number(static_cast<double>(x.dist.n)), number(x.dist.rel_l2),
                   number(x.dist.max_abs), number(x.dist.zero_frac), number(x.dist.snr_db)}},
                 {"extra", extra}});
  }
  return {{"pass", r.pass},
          {"options", r.options},
          {"tensors", t},
          {"notes", r.notes},
          {"seconds", r.seconds},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"params_before", r.params_before},
          {"params_after", r.params_after},
          {"model_zero", r.model_zero},
          {"model_matrix_weights", r.model_matrix_weights}};
}

constexpr int64_t kBig = int64_t{1} << 50;

std::vector<int64_t> read_shape(const nlohmann::json& v, const std::string& what) {
  SLMC_CHECK(v.is_array() && v.size() <= 4, what, ": not a shape");
  std::vector<int64_t> s;
  for (const auto& d : v) s.push_back(checked_json::get_int(d, what, 0, kBig));
  return s;
}

PassReport read_report(const nlohmann::json& j, const std::string& o) {
  PassReport r;
  r.pass = checked_json::get_string(j.at("pass"), o + ": pass");
  r.options = checked_json::get_string(j.at("options"), o + ": options");
  r.seconds = checked_json::get_number(j.at("seconds"), o + ": seconds", 0, 1e12);
  r.peak_rss_bytes = checked_json::get_int(j.at("peak_rss_bytes"), o + ": peak_rss_bytes", 0, kBig);
  r.params_before = checked_json::get_int(j.at("params_before"), o + ": params_before", 0, kBig);
  r.params_after = checked_json::get_int(j.at("params_after"), o + ": params_after", 0, kBig);
  r.model_zero = checked_json::get_int(j.at("model_zero"), o + ": model_zero", 0, kBig);
  r.model_matrix_weights =
      checked_json::get_int(j.at("model_matrix_weights"), o + ": model_matrix_weights", 0, kBig);
  for (const auto& n : j.at("notes")) r.notes.push_back(checked_json::get_string(n, o + ": notes"));
  for (const auto& x : j.at("tensors")) {
    TensorReport t;
    const std::string w = o + ": tensors";
    t.name = checked_json::get_string(x.at("name"), w);
    t.shape = read_shape(x.at("shape"), w);
    t.format = checked_json::get_string(x.at("format"), w);
    t.fallback = checked_json::get_bool(x.at("fallback"), w);
    t.note = checked_json::get_string(x.at("note"), w);
    t.n_weights = checked_json::get_int(x.at("n_weights"), w, 0, kBig);
    t.n_zero = checked_json::get_int(x.at("n_zero"), w, 0, kBig);
    t.bytes_before = static_cast<uint64_t>(checked_json::get_int(x.at("bytes_before"), w, 0, kBig));
    t.bytes_after = static_cast<uint64_t>(checked_json::get_int(x.at("bytes_after"), w, 0, kBig));
    const auto& d = x.at("dist");
    SLMC_CHECK(d.is_array() && d.size() == 5, w, ": dist");
    t.dist.n = static_cast<int64_t>(read_number(d[0], w));
    t.dist.rel_l2 = read_number(d[1], w);
    t.dist.max_abs = read_number(d[2], w);
    t.dist.zero_frac = read_number(d[3], w);
    t.dist.snr_db = read_number(d[4], w);
    for (const auto& [k, v] : x.at("extra").items()) t.extra[k] = read_number(v, w);
    r.tensors.push_back(std::move(t));
  }
  return r;
}

}  // namespace

std::string cache_key(const std::vector<std::string>& parts) {
  Sha256 h;
  for (const std::string& p : parts) {
    h.update(std::to_string(p.size()) + ":");
    h.update(p);
  }
  return h.hex();
}

bool stage_cached(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / kIndex, ec);
}

void save_stage(const std::string& dir, const CompressedModel& m, const PassReport& rep) {
  if (stage_cached(dir)) return;
  const fs::path tmp = dir + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  SLMC_CHECK(!ec, tmp.string(), ": cannot create the stage cache folder: ", ec.message());

  format::SlmWriter w;
  w.set_spec_json(m.model.spec.to_json());
  for (const TensorDecl& d : expected_tensors(m.model.spec)) {
    const HostTensor& t = m.model.tensors.at(d.name);
    std::vector<uint8_t> bytes(t.data.size() * sizeof(float));
    std::memcpy(bytes.data(), t.data.data(), bytes.size());
    w.add_tensor(d.name, codec::Format::kF32, t.shape, std::move(bytes));
  }
  w.write((tmp / kModel).string());

  std::string side;
  nlohmann::json packed = nlohmann::json::array(), masks = nlohmann::json::array();
  for (const auto& [name, q] : m.packed) {
    packed.push_back({{"name", name},
                      {"format", codec::format_info(q.format).name},
                      {"shape", q.shape},
                      {"offset", side.size()},
                      {"bytes", q.bytes.size()}});
    side.append(reinterpret_cast<const char*>(q.bytes.data()), q.bytes.size());
  }
  for (const auto& [name, mk] : m.masks) {
    masks.push_back({{"name", name},
                     {"shape", mk.shape},
                     {"n", mk.n},
                     {"m", mk.m},
                     {"offset", side.size()},
                     {"bytes", mk.pruned.size()}});
    side.append(reinterpret_cast<const char*>(mk.pruned.data()), mk.pruned.size());
  }
  write_file_atomically((tmp / kSide).string(), side);
  const nlohmann::json index = {
      {"report", report_json(rep)}, {"packed", packed}, {"masks", masks}};
  write_file_atomically((tmp / kIndex).string(), index.dump(1));
  fs::rename(tmp, dir, ec);
  if (ec) {  // another run completed the same entry first
    fs::remove_all(tmp, ec);
    SLMC_CHECK(stage_cached(dir), dir, ": cannot complete the stage cache entry");
  }
}

PassReport load_stage(const std::string& dir, CompressedModel* mp) {
  const std::string index_path = (fs::path(dir) / kIndex).string();
  const nlohmann::json j = checked_json::parse(read_file(index_path), index_path);
  try {
    const PassReport rep = read_report(j.at("report"), index_path);
    if (mp == nullptr) return rep;
    CompressedModel& m = *mp;
    const std::string origin = m.model.path, fmt = m.model.format;
    m.model = load_model((fs::path(dir) / kModel).string());
    m.model.path = origin;
    m.model.format = fmt;
    const std::string side = read_file((fs::path(dir) / kSide).string());
    m.packed.clear();
    m.masks.clear();
    auto part = [&](const nlohmann::json& e, const std::string& what, uint64_t expect) {
      const auto off = static_cast<uint64_t>(checked_json::get_int(e.at("offset"), what, 0, kBig));
      const auto n = static_cast<uint64_t>(checked_json::get_int(e.at("bytes"), what, 0, kBig));
      SLMC_CHECK(n == expect && off <= side.size() && n <= side.size() - off, index_path, ": ",
                 what, " lies outside side.bin or has the wrong size");
      return std::vector<uint8_t>(side.begin() + static_cast<std::ptrdiff_t>(off),
                                  side.begin() + static_cast<std::ptrdiff_t>(off + n));
    };
    for (const auto& e : j.at("packed")) {
      const std::string name = checked_json::get_string(e.at("name"), index_path + ": packed");
      const std::string what = index_path + ": packed " + name;
      codec::QTensor q;
      SLMC_CHECK(codec::format_from_name(checked_json::get_string(e.at("format"), what), &q.format),
                 what, ": unknown format");
      q.shape = read_shape(e.at("shape"), what);
      SLMC_CHECK(q.shape.size() == 2, what, ": not a matrix");
      const auto it = m.model.tensors.find(name);
      SLMC_CHECK(it != m.model.tensors.end() && it->second.shape == q.shape, what,
                 ": not a tensor of the cached model");
      q.bytes = part(e, what, codec::row_bytes(q.format, q.shape[1]) * static_cast<uint64_t>(q.shape[0]));
      m.packed[name] = std::move(q);
    }
    for (const auto& e : j.at("masks")) {
      const std::string name = checked_json::get_string(e.at("name"), index_path + ": masks");
      const std::string what = index_path + ": mask " + name;
      SparsityMask mk;
      mk.shape = read_shape(e.at("shape"), what);
      mk.n = checked_json::get_int(e.at("n"), what, 0, 1 << 20);
      mk.m = checked_json::get_int(e.at("m"), what, 0, 1 << 20);
      const auto it = m.model.tensors.find(name);
      SLMC_CHECK(it != m.model.tensors.end() && it->second.shape == mk.shape, what,
                 ": not a tensor of the cached model");
      mk.pruned = part(e, what, static_cast<uint64_t>(it->second.numel()));
      m.masks[name] = std::move(mk);
    }
    return rep;
  } catch (const nlohmann::json::exception& e) {
    fail(index_path, ": damaged stage cache entry: ", printable(e.what()));
  }
}

}  // namespace slmc
