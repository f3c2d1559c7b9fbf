// Untrusted JSON (config.json, tokenizer.json, safetensors headers, .slm specs): parsed with a
// nesting bound, numbers read through checked accessors that name the key and the value, and
// errors that quote a bounded excerpt of a value, never the whole of it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace slmc::checked_json {

// Deeper nesting than any real checkpoint file uses; deeper input is refused before it can
// exhaust the stack of a recursive consumer (dump(), a recursive walk).
inline constexpr int kMaxDepth = 128;

// Parses `text`; throws slmc::Error naming `origin` for invalid JSON or nesting deeper than
// `max_depth`. Duplicate object keys are refused too (the last one would silently win).
nlohmann::json parse(std::string_view text, const std::string& origin, int max_depth = kMaxDepth);

// At most `max_chars` characters describing `v` for an error message: a short value as JSON,
// a long one cut with "...", a container as "[array of N]" / "{object of N keys}" when it does
// not fit. Never recurses deeper than the parse bound.
std::string excerpt(const nlohmann::json& v, size_t max_chars = 60);

// Checked reads. `what` names the value in errors ("config.json: num_hidden_layers"). An integer
// must be an integral JSON number (an integral float such as 4096.0 is accepted) within
// [lo, hi]; a number must be finite and within [lo, hi].
int64_t get_int(const nlohmann::json& v, const std::string& what, int64_t lo, int64_t hi);
double get_number(const nlohmann::json& v, const std::string& what, double lo, double hi);
bool get_bool(const nlohmann::json& v, const std::string& what);
std::string get_string(const nlohmann::json& v, const std::string& what,
                       size_t max_bytes = size_t{1} << 20);

// Typed reads of one JSON object's keys: the one way untrusted files (config.json, .slm specs,
// safetensors headers, sharded indexes) are read. Every error names `origin`, the key with its
// path inside the file (`rope_scaling.factor`, `layers[3].n_head`) and a bounded excerpt of the
// value. "Absent" means missing or null, as transformers reads config.json.
class ObjectReader {
 public:
  // Throws naming `origin` and `path` if `j` is not an object. `j` must outlive the reader.
  ObjectReader(const nlohmann::json& j, std::string origin, std::string path = "");

  bool has(const char* key) const;             // present and not null
  bool contains(const char* key) const;        // present, null or not
  const nlohmann::json& at(const char* key) const;  // required (present, not null)
  // "origin: key 'path.key'": the prefix of every message about `key`.
  std::string what(const char* key) const;

  int64_t req_int(const char* key, int64_t lo, int64_t hi) const;
  int64_t opt_int(const char* key, int64_t def, int64_t lo, int64_t hi) const;
  double req_number(const char* key, double lo, double hi) const;
  double opt_number(const char* key, double def, double lo, double hi) const;
  bool req_bool(const char* key) const;
  bool opt_bool(const char* key, bool def) const;
  std::string req_string(const char* key) const;
  std::string opt_string(const char* key, const std::string& def) const;
  // A nested object (required), read with the path "path.key".
  ObjectReader object(const char* key) const;
  // A required array of at most `max_size` elements (bounded before anything is built from it).
  const nlohmann::json& array(const char* key, size_t max_size) const;
  // Element `i` of array `key` as an object reader with the path "key[i]".
  ObjectReader element(const char* key, size_t i) const;
  // "key[i]" for messages about elements of a list.
  std::string element_what(const char* key, size_t i) const;

  const std::string& origin() const { return origin_; }
  const nlohmann::json& json() const { return j_; }

 private:
  const nlohmann::json& j_;
  std::string origin_, path_;
};

}  // namespace slmc::checked_json
