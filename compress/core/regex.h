// Regular expressions from untrusted files (tokenizer.json split patterns, recipe selectors):
// PCRE2 in UTF mode with Unicode properties (\p{L}, \p{N}), lookahead, and JIT compilation when
// the platform has it. Why PCRE2: it is in Debian, supports the Perl/Oniguruma syntax that
// Hugging Face tokenizer files use (Hugging Face's own tokenizers use Oniguruma; PCRE2 reads the
// same patterns), its JIT makes pre-tokenization fast, and its match and depth limits bound the
// work any one pattern can do on any one subject, so a hostile pattern fails with an error
// instead of hanging or overflowing the stack (std::regex does both).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace slmc {

class Regex {
 public:
  struct Options {
    bool caseless = false;
    // Bounds on a single match attempt (PCRE2 match_limit / depth_limit); exceeding them is an
    // error naming the pattern, never a hang.
    uint32_t match_limit = 10'000'000;
    uint32_t depth_limit = 10'000;
    size_t max_pattern_bytes = 4096;
  };

  // Compiles `pattern` (UTF-8). Throws slmc::Error naming `origin`, the pattern (an excerpt) and
  // PCRE2's message with the offset for a pattern that does not compile, is longer than
  // max_pattern_bytes, or is not valid UTF-8.
  Regex(const std::string& pattern, const std::string& origin);
  Regex(const std::string& pattern, const std::string& origin, const Options& opt);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  const std::string& pattern() const { return pattern_; }

  // Whether the whole of `subject` matches.
  bool full_match(std::string_view subject) const;

  // A reusable matcher for one thread: holds PCRE2's match data, so a loop of find() calls does
  // not allocate. Not thread-safe; the Regex must outlive it.
  class Matcher {
   public:
    explicit Matcher(const Regex& re);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // The first match in `subject` starting at or after byte `from` (lookbehind may read
    // before `from`). Returns false when there is none; [*begin, *end) is the match. An empty
    // match is reported as such; callers that loop must step past it. `subject` must be valid
    // UTF-8 (callers validate once; checking per call would make a loop quadratic).
    bool find(std::string_view subject, size_t from, size_t* begin, size_t* end);

   private:
    friend class Regex;
    const Regex& re_;
    void* md_;  // pcre2_match_data*
  };

 private:
  void compile(const Options& opt);
  std::string pattern_, origin_;
  void* code_ = nullptr;  // pcre2_code*
  void* mctx_ = nullptr;  // pcre2_match_context*
  bool jit_ = false;
};

// Whether `s` is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace slmc
