#include "compress/core/json_util.h"

#include <cmath>
#include <set>
#include <vector>

#include "compress/core/error.h"

namespace slmc::checked_json {

nlohmann::json parse(std::string_view text, const std::string& origin, int max_depth) {
  // The parser callback sees every key at its depth: refuse depth first (before the value is
  // built) and duplicate keys per open object.
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string problem;
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    if (depth > max_depth) {
      problem = str_cat("nesting deeper than ", max_depth, " levels");
      throw Error(problem);
    }
    if (ev == E::object_start) {
      keys.emplace_back();
    } else if (ev == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == E::key && !keys.empty()) {
      const std::string k = parsed.get<std::string>();
      if (!keys.back().insert(k).second) {
        problem = str_cat("duplicate key \"", k.substr(0, 60), k.size() > 60 ? "...\"" : "\"");
        throw Error(problem);
      }
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb);
  } catch (const Error&) {
    fail(origin, ": ", problem);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": not valid JSON: ", e.what());
  }
}

std::string excerpt(const nlohmann::json& v, size_t max_chars) {
  if (v.is_array() || v.is_object()) {
    // Containers hold at most kMaxDepth levels (parse), so dump() cannot overflow the stack; a
    // large one is summarised instead of printed.
    if (v.size() <= 8) {
      std::string s = v.dump();
      if (s.size() <= max_chars) return s;
    }
    return v.is_array() ? str_cat("[array of ", v.size(), "]")
                        : str_cat("{object of ", v.size(), " keys}");
  }
  std::string s = v.dump();
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

int64_t get_int(const nlohmann::json& v, const std::string& what, int64_t lo, int64_t hi) {
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    const int64_t x = v.get<int64_t>();
    SLMC_CHECK(x >= lo && x <= hi, what, " = ", x, " is outside [", lo, ", ", hi, "]");
    return x;
  }
  if (v.is_number_unsigned()) {
    const uint64_t x = v.get<uint64_t>();
    SLMC_CHECK(hi >= 0 && x <= static_cast<uint64_t>(hi) && static_cast<int64_t>(x) >= lo, what,
               " = ", x, " is outside [", lo, ", ", hi, "]");
    return static_cast<int64_t>(x);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // Compare as doubles before converting: the conversion of an out-of-range double is UB.
    SLMC_CHECK(std::isfinite(d) && d == std::floor(d), what, " = ", excerpt(v),
               " is not an integer");
    SLMC_CHECK(d >= static_cast<double>(lo) && d <= static_cast<double>(hi), what, " = ",
               excerpt(v), " is outside [", lo, ", ", hi, "]");
    return static_cast<int64_t>(d);
  }
  fail(what, " must be an integer, got ", excerpt(v));
}

double get_number(const nlohmann::json& v, const std::string& what, double lo, double hi) {
  SLMC_CHECK(v.is_number(), what, " must be a number, got ", excerpt(v));
  const double d = v.get<double>();
  SLMC_CHECK(std::isfinite(d) && d >= lo && d <= hi, what, " = ", excerpt(v), " is outside [",
             lo, ", ", hi, "]");
  return d;
}

bool get_bool(const nlohmann::json& v, const std::string& what) {
  SLMC_CHECK(v.is_boolean(), what, " must be true or false, got ", excerpt(v));
  return v.get<bool>();
}

std::string get_string(const nlohmann::json& v, const std::string& what, size_t max_bytes) {
  SLMC_CHECK(v.is_string(), what, " must be a string, got ", excerpt(v));
  const std::string& s = v.get_ref<const std::string&>();
  SLMC_CHECK(s.size() <= max_bytes, what, " is a string of ", s.size(), " bytes (at most ",
             max_bytes, ")");
  return s;
}

ObjectReader::ObjectReader(const nlohmann::json& j, std::string origin, std::string path)
    : j_(j), origin_(std::move(origin)), path_(std::move(path)) {
  SLMC_CHECK(j_.is_object(), origin_, path_.empty() ? ": expected a JSON object"
                                                    : ": key '" + path_ + "' must be an object",
             ", got ", excerpt(j_));
}

std::string ObjectReader::what(const char* key) const {
  return str_cat(origin_, ": key '", path_, path_.empty() ? "" : ".", key, "'");
}

bool ObjectReader::contains(const char* key) const { return j_.contains(key); }

bool ObjectReader::has(const char* key) const {
  const auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

const nlohmann::json& ObjectReader::at(const char* key) const {
  SLMC_CHECK(has(key), origin_, ": missing required key '", path_, path_.empty() ? "" : ".", key,
             "'");
  return *j_.find(key);
}

int64_t ObjectReader::req_int(const char* key, int64_t lo, int64_t hi) const {
  return get_int(at(key), what(key), lo, hi);
}
int64_t ObjectReader::opt_int(const char* key, int64_t def, int64_t lo, int64_t hi) const {
  return has(key) ? req_int(key, lo, hi) : def;
}
double ObjectReader::req_number(const char* key, double lo, double hi) const {
  return get_number(at(key), what(key), lo, hi);
}
double ObjectReader::opt_number(const char* key, double def, double lo, double hi) const {
  return has(key) ? req_number(key, lo, hi) : def;
}
bool ObjectReader::req_bool(const char* key) const { return get_bool(at(key), what(key)); }
bool ObjectReader::opt_bool(const char* key, bool def) const {
  return has(key) ? req_bool(key) : def;
}
std::string ObjectReader::req_string(const char* key) const {
  return get_string(at(key), what(key));
}
std::string ObjectReader::opt_string(const char* key, const std::string& def) const {
  return has(key) ? req_string(key) : def;
}

ObjectReader ObjectReader::object(const char* key) const {
  return ObjectReader(at(key), origin_, str_cat(path_, path_.empty() ? "" : ".", key));
}

const nlohmann::json& ObjectReader::array(const char* key, size_t max_size) const {
  const nlohmann::json& v = at(key);
  SLMC_CHECK(v.is_array(), what(key), " must be a list, got ", excerpt(v));
  SLMC_CHECK(v.size() <= max_size, what(key), " has ", v.size(), " elements (at most ", max_size,
             ")");
  return v;
}

std::string ObjectReader::element_what(const char* key, size_t i) const {
  return str_cat(origin_, ": key '", path_, path_.empty() ? "" : ".", key, "[", i, "]'");
}

ObjectReader ObjectReader::element(const char* key, size_t i) const {
  const nlohmann::json& v = at(key);
  SLMC_CHECK(v.is_array() && i < v.size(), element_what(key, i), " is missing");
  return ObjectReader(v[i], origin_, str_cat(path_, path_.empty() ? "" : ".", key, "[", i, "]"));
}

}  // namespace slmc::checked_json
