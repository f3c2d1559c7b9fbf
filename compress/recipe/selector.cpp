#include "compress/recipe/selector.h"

#include "compress/core/error.h"
#include "compress/core/regex.h"

namespace slmc {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Plain patterns match whole dot-separated components at the end of the name, with or without
// the trailing ".weight"/".bias": "ffn_down" matches "blk.3.ffn_down.weight", not "xffn_down".
bool plain_matches(const std::string& p, const std::string& name) {
  for (const std::string& n : {name, name.substr(0, name.rfind('.'))}) {
    if (n == p) return true;
    if (ends_with(n, "." + p)) return true;
  }
  return false;
}

}  // namespace

std::string PatternList::str() const {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s + "]";
}

std::vector<Selector::Compiled> Selector::compile(const PatternList& l) {
  SLMC_CHECK(l.items.size() == l.where.size(), "PatternList: items and where differ in length");
  std::vector<Compiled> out;
  for (size_t i = 0; i < l.items.size(); ++i) {
    Compiled c;
    c.pattern = l.items[i];
    SLMC_CHECK(!c.pattern.empty(), l.where[i], ": empty tensor pattern");
    if (c.pattern.rfind("re:", 0) == 0) {
      Regex::Options opt;
      opt.max_pattern_bytes = kMaxSelectorRegexBytes;
      c.re = std::make_shared<const Regex>(c.pattern.substr(3), l.where[i] + ": bad regex", opt);
    }
    out.push_back(std::move(c));
  }
  return out;
}

bool Selector::matches(const Compiled& c, const std::string& name) {
  return c.re ? c.re->full_match(name) : plain_matches(c.pattern, name);
}

bool pattern_matches(const std::string& pattern, const std::string& name) {
  PatternList l;
  l.add(pattern, "pattern");
  return Selector::matches(Selector::compile(l).front(), name);
}

Selector::Selector(PatternList targets, PatternList ignore)
    : targets_(std::move(targets)), ignore_(std::move(ignore)) {
  t_ = compile(targets_);
  i_ = compile(ignore_);
}

bool Selector::selected(const std::string& name) const {
  bool hit = t_.empty();
  for (const Compiled& c : t_) hit = hit || matches(c, name);
  if (!hit) return false;
  for (const Compiled& c : i_)
    if (matches(c, name)) return false;
  return true;
}

void Selector::check_all_match(const std::vector<std::string>& names) const {
  auto check = [&](const std::vector<Compiled>& cs, const PatternList& l, const char* key) {
    for (size_t i = 0; i < cs.size(); ++i) {
      bool any = false;
      for (const std::string& n : names) any = any || matches(cs[i], n);
      SLMC_CHECK(any, l.where[i], ": ", key, " pattern ", quoted_excerpt(cs[i].pattern),
                 " matches no tensor of the model (names look like blk.0.attn_q.weight, "
                 "token_embd.weight, output.weight)");
    }
  };
  check(t_, targets_, "targets");
  check(i_, ignore_, "ignore");
}

}  // namespace slmc
