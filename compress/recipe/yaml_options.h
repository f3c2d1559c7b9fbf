// Options are declared once, as a struct with `template <class V> void visit(V& v)` that calls
// v(key, field, help) for every field. This binder applies a YAML mapping to such a struct:
// unknown keys, wrong types and out-of-range values are errors naming file:line and the key.
// The same visit() drives CLI flags and the printed resolved configuration.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>

#include "compress/core/error.h"
#include "compress/recipe/selector.h"

namespace slmc {

// "file:line" of a YAML node (1-based), for error messages.
std::string yaml_where(const std::string& file, const YAML::Node& node);

// Loads a YAML file of one document; syntax errors name file:line. Refused with file:line too:
// a second document, a mapping key that is not a plain scalar (`? {a: 1}`), a key given twice in
// one mapping (yaml-cpp would keep both and find the first), nesting deeper than
// kMaxYamlDepth (which also stops an alias cycle such as `&a [*a]`). No yaml-cpp exception
// leaves this function.
inline constexpr int kMaxYamlDepth = 32;
YAML::Node load_yaml_file(const std::string& path);

// The key of a mapping entry as a string (load_yaml_file has checked that it is a scalar).
std::string yaml_key(const std::string& file, const YAML::Node& key);

namespace detail {
template <typename T>
const char* yaml_type_name() {
  if (std::is_same<T, bool>::value) return "a boolean";
  if (std::is_integral<T>::value) return "an integer";
  if (std::is_floating_point<T>::value) return "a number";
  return "a string";
}
}  // namespace detail

class YamlBinder {
 public:
  YamlBinder(std::string file, YAML::Node map, std::string section)
      : file_(std::move(file)), map_(std::move(map)), section_(std::move(section)) {
    SLMC_CHECK(map_.IsMap(), yaml_where(file_, map_), ": ", section_.empty() ? "the file" : section_,
               " must be a mapping");
  }

  template <typename T>
  void operator()(const char* key, T& field, const char* /*help*/) {
    known_.insert(key);
    const YAML::Node n = map_[key];
    if (!n) return;  // keep the default
    SLMC_CHECK(n.IsScalar(), yaml_where(file_, n), ": key '", key, "' must be ",
               detail::yaml_type_name<T>());
    try {
      field = n.as<T>();
    } catch (const YAML::Exception&) {
      fail(yaml_where(file_, n), ": key '", key, "' must be ", detail::yaml_type_name<T>(),
           ", got ", quoted_excerpt(n.Scalar()));
    }
    // `.nan` or `.inf` would pass every comparison a gate or option makes (max_kl: .nan
    // silently disabled the gate): numbers must be finite.
    if constexpr (std::is_floating_point<T>::value)
      SLMC_CHECK(std::isfinite(field), yaml_where(file_, n), ": key '", key,
                 "' must be a finite number, got ", quoted_excerpt(n.Scalar()));
  }

  // A pattern list: one string or a sequence of strings; each item remembers its line.
  void operator()(const char* key, PatternList& field, const char* /*help*/) {
    known_.insert(key);
    const YAML::Node n = map_[key];
    if (!n) return;
    field = PatternList();
    auto add = [&](const YAML::Node& item) {
      SLMC_CHECK(item.IsScalar(), yaml_where(file_, item), ": key '", key,
                 "' must be a string or a list of strings");
      field.add(item.Scalar(), yaml_where(file_, item) + " (" + key + ")");
    };
    if (n.IsSequence()) {
      for (const YAML::Node& item : n) add(item);
    } else {
      add(n);
    }
  }

  // Whether `key` was present in the mapping (explicit values may be held to stricter rules
  // than defaults, e.g. a group size that does not fit a tensor).
  bool has(const char* key) const { return static_cast<bool>(map_[key]); }
  std::string where(const char* key) const {
    const YAML::Node n = map_[key];
    return n ? yaml_where(file_, n) : file_;
  }

  // Call after visit(): every key in the mapping must have been visited.
  void reject_unknown() const {
    for (const auto& kv : map_) {
      const std::string k = yaml_key(file_, kv.first);
      if (!known_.count(k)) {
        std::ostringstream keys;
        for (const auto& s : known_) keys << (keys.tellp() ? ", " : "") << s;
        fail(yaml_where(file_, kv.first), ": unknown key ", quoted_excerpt(k),
             section_.empty() ? "" : " in " + section_, " (known: ", keys.str(), ")");
      }
    }
  }

 private:
  std::string file_;
  YAML::Node map_;
  std::string section_;
  std::set<std::string> known_;
};

// Binds `map` onto `opts` via opts.visit() and rejects unknown keys.
template <typename Options>
void bind_yaml(const std::string& file, const YAML::Node& map, const std::string& section,
               Options& opts) {
  YamlBinder b(file, map, section);
  opts.visit(b);
  b.reject_unknown();
}

// Prints "key: value" lines of the resolved options (same visit()).
// With indent "" the output is itself a valid YAML mapping that binds back to the same values.
struct OptionPrinter {
  std::string indent = "  ";
  std::ostringstream os;
  template <typename T>
  void operator()(const char* key, const T& field, const char* /*help*/) {
    os << indent << key << ": " << field << "\n";
  }
  void operator()(const char* key, const bool& field, const char* /*help*/) {
    os << indent << key << ": " << (field ? "true" : "false") << "\n";
  }
  void operator()(const char* key, const PatternList& field, const char* /*help*/) {
    os << indent << key << ": " << field.str() << "\n";
  }
  void operator()(const char* key, const double& field, const char* /*help*/) {
    std::ostringstream v;
    v.precision(17);
    v << field;
    std::string s = v.str();
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // stays a float in YAML
    os << indent << key << ": " << s << "\n";
  }
};

}  // namespace slmc
