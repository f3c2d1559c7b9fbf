// `targets` / `ignore` selectors (STYLE 13): which tensors a pass touches.
//   "ffn_down"            every tensor whose last name components are ffn_down(.weight): all layers
//   "blk.0.attn_q"        that tensor (".weight" may be left out)
//   "output"              the output head; "token_embd" the embedding
//   "re:blk\.[0-3]\..*"   a regex (PCRE2, compress/core/regex.h) that must match the whole
//                         canonical name; at most kMaxSelectorRegexBytes bytes, nesting and the
//                         work of each match bounded (a hostile recipe fails, never hangs)
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace slmc {

class Regex;

// Longest `re:` pattern a selector accepts (tensor names are short; no real selector comes near).
inline constexpr size_t kMaxSelectorRegexBytes = 1024;

// A list of patterns with where each came from ("recipe.yaml:12" or "--ignore"), for errors.
struct PatternList {
  std::vector<std::string> items;
  std::vector<std::string> where;  // same length as items

  bool empty() const { return items.empty(); }
  void add(std::string pattern, std::string origin) {
    items.push_back(std::move(pattern));
    where.push_back(std::move(origin));
  }
  std::string str() const;  // "[ffn_down, re:.*attn.*]"
};

// Whether one pattern selects the canonical tensor name. Throws slmc::Error for a bad regex.
bool pattern_matches(const std::string& pattern, const std::string& name);

class Selector {
 public:
  // Empty targets select everything. Regexes are compiled here: a bad one is an error naming
  // where it came from.
  Selector(PatternList targets, PatternList ignore);

  bool selected(const std::string& name) const;  // matched by a target and by no ignore
  // Throws naming the pattern and where it came from when a target or ignore pattern matches
  // none of `names` (a typo would otherwise silently select nothing).
  void check_all_match(const std::vector<std::string>& names) const;

  const PatternList& targets() const { return targets_; }
  const PatternList& ignore() const { return ignore_; }

 private:
  friend bool pattern_matches(const std::string& pattern, const std::string& name);
  struct Compiled {
    std::string pattern;
    std::shared_ptr<const Regex> re;  // set for "re:" patterns
  };
  static std::vector<Compiled> compile(const PatternList& l);
  static bool matches(const Compiled& c, const std::string& name);

  PatternList targets_, ignore_;
  std::vector<Compiled> t_, i_;
};

}  // namespace slmc
