// Errors: one exception type for bad input, one place (main) that turns it into an exit code.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
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
