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

}  // namespace slmc::checked_json
