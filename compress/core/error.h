// Errors: one exception type for bad input, one place (main) that turns it into an exit code.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace slmc {

// Bad input: a file, key, tensor or value the user supplied. `slmc` exits 2 on it.
// The message names the thing and the offending value; it is one line.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, T&& v, Rest&&... rest) {
  os << std::forward<T>(v);
  append(os, std::forward<Rest>(rest)...);
}
}  // namespace detail

// Concatenates the arguments with operator<< into one message.
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  detail::append(os, std::forward<Args>(args)...);
  return os.str();
}

// `s` made safe for a one-line message: bytes outside printable ASCII as \xNN (and, with
// `escape_quotes`, '"' and '\\' too), cut after `max_bytes` with "...". For text from files and
// from libraries that echo their input (yaml-cpp puts the offending character in its messages).
inline std::string printable(std::string_view s, size_t max_bytes = 200, bool escape_quotes = false) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_bytes; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && !(escape_quotes && (c == '"' || c == '\\'))) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (s.size() > max_bytes) out += "...";
  return out;
}

// `s` in double quotes for a one-line message (names from untrusted files can be long).
inline std::string quoted_excerpt(std::string_view s, size_t max_bytes = 60) {
  std::string out = "\"" + printable(s.substr(0, max_bytes), max_bytes, true) + "\"";
  if (s.size() > max_bytes) out += "...";
  return out;
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace slmc

// Validates input; unlike assert it never vanishes in Release builds.
#define SLMC_CHECK(cond, ...)          \
  do {                                 \
    if (!(cond)) ::slmc::fail(__VA_ARGS__); \
  } while (0)
