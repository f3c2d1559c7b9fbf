#include "compress/tokenizer/hf_pipeline.h"

#include <algorithm>
#include <array>

#include "compress/core/json_util.h"
#include "compress/tokenizer/unicode.h"

namespace slmc::hf {

using tokenizer_internal::FunctionRef;

// ---- JSON helpers ---------------------------------------------------------------------------

const json* find_key(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

const json& require_key(const json& obj, const char* key, const Where& w) {
  const json* v = find_key(obj, key);
  if (v == nullptr) w.fail("missing key \"", key, "\"");
  return *v;
}

void require_object(const json& v, const Where& w) {
  if (!v.is_object()) w.fail("must be an object, got ", checked_json::excerpt(v));
}

std::string get_string(const json& v, const Where& w) {
  return checked_json::get_string(v, w.what());
}

bool get_bool(const json& v, const Where& w) { return checked_json::get_bool(v, w.what()); }

bool opt_bool(const json& obj, const char* key, bool def, const Where& w) {
  const json* v = find_key(obj, key);
  if (v == nullptr || v->is_null()) return def;
  return get_bool(*v, w[key]);
}

std::string type_of(const json& obj, const Where& w) {
  require_object(obj, w);
  return get_string(require_key(obj, "type", w), w["type"]);
}

namespace {

// One character of `s` (valid UTF-8) as a code point, for keys that hold a single char.
uint32_t single_char(const json& v, const Where& w) {
  const std::string s = get_string(v, w);
  size_t len = 0;
  if (s.empty() || !valid_utf8(s) || (unicode::decode(s, 0, &len), len != s.size())) {
    w.fail("must be a single character, got ", checked_json::excerpt(v));
  }
  return unicode::decode(s, 0, &len);
}

std::string utf8_of(uint32_t cp) {
  std::string s;
  unicode::append(&s, cp);
  return s;
}

int64_t get_count(const json& obj, const char* key, const Where& w) {
  const json* v = find_key(obj, key);
  if (v == nullptr || v->is_null()) return 0;
  return checked_json::get_int(*v, w[key].what(), 0, 1 << 20);
}

// The names of a type table, for "supported: ..." in errors.
template <typename Table>
std::string names_of(const Table& table) {
  std::string s;
  for (const auto& t : table) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

// The component `j` describes, built by the entry of `table` (one table per kind) its "type"
// names; nullptr for JSON null. `extra` goes to the entry's make().
template <typename Table, typename... Extra>
auto make_from(const Table& table, const char* kind, const json& j, const Where& w, Extra... extra)
    -> decltype(table[0].make(j, w, extra...)) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, w);
  for (const auto& t : table)
    if (type == t.name) return t.make(j, w, extra...);
  w["type"].fail(kind, " type ", tokenizer_internal::quote(type), " is not supported (supported: ",
                 names_of(table), ")");
}

// The steps of a Sequence: obj[key] must be a list, each entry built by `make` (nulls left out).
template <typename T>
std::vector<std::unique_ptr<T>> make_steps(const json& obj, const char* key, const Where& w,
                                           std::unique_ptr<T> (*make)(const json&, const Where&)) {
  const json& list = require_key(obj, key, w);
  if (!list.is_array()) w[key].fail("must be a list, got ", checked_json::excerpt(list));
  std::vector<std::unique_ptr<T>> steps;
  for (size_t i = 0; i < list.size(); ++i) {
    auto step = make(list[i], w[key][i]);
    if (step) steps.push_back(std::move(step));
  }
  return steps;
}

}  // namespace

std::string onig_to_pcre2(const std::string& p) {
  // Unicode White_Space, listed: PCRE2's \s also takes U+180E.
  static const std::string kWhite =
      "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
      "\\x{205F}\\x{3000}";
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += in_class ? kWhite : "[" + kWhite + "]";
      } else if (n == 'S' && !in_class) {
        out += "[^" + kWhite + "]";
      } else if (n == 'h') {
        out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
      } else if (n == 'H' && !in_class) {
        out += "[^0-9a-fA-F]";
      } else {  // any other escape: the backslash and the whole character after it
        const size_t len =
            std::min(unicode::char_len(static_cast<uint8_t>(n)), p.size() - i - 1);
        out.append(p, i, 1 + len);
        i += 1 + len;
        continue;
      }
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // a leading ']' is a literal
      continue;
    }
    if (in_class && p.compare(i, 2, "[:") == 0) {  // POSIX class [:alpha:]: copied whole
      const size_t e = p.find(":]", i + 2);
      if (e != std::string::npos) {
        out.append(p, i, e + 2 - i);
        i = e + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
    ++i;
  }
  return out;
}

Regex::Matcher& Scratch::matcher(const Regex& re) {
  for (auto& [r, m] : matchers_)
    if (r == &re) return *m;
  matchers_.emplace_back(&re, std::make_unique<Regex::Matcher>(re));
  return *matchers_.back().second;
}

Pattern::Pattern(const json& j, const Where& w) {
  require_object(j, w);
  if (const json* s = find_key(j, "String")) {
    literal_ = get_string(*s, w["String"]);
    if (literal_.empty()) w["String"].fail("is empty");
    if (!valid_utf8(literal_)) w["String"].fail("is not valid UTF-8");
    source_ = literal_;
  } else if (const json* r = find_key(j, "Regex")) {
    source_ = get_string(*r, w["Regex"]);
    if (!valid_utf8(source_)) w["Regex"].fail("is not valid UTF-8");
    regex_ = std::make_unique<Regex>(onig_to_pcre2(source_), w["Regex"].what());
  } else {
    w.fail("must be {\"String\": ...} or {\"Regex\": ...}, got ", checked_json::excerpt(j));
  }
}

void Pattern::for_each_match(std::string_view s, Scratch& sc,
                             FunctionRef<void(size_t, size_t)> fn) const {
  if (!regex_) {
    for (size_t pos = s.find(literal_); pos != std::string_view::npos;
         pos = s.find(literal_, pos + literal_.size())) {
      fn(pos, pos + literal_.size());
    }
    return;
  }
  Regex::Matcher& m = sc.matcher(*regex_);
  size_t from = 0, last_end = 0, b = 0, e = 0;
  bool have_last = false;
  while (from <= s.size() && m.find(s, from, &b, &e)) {
    if (b == e && have_last && last_end == e) {  // onig::FindMatches: no empty match here
      from += from < s.size() ? unicode::char_len(static_cast<uint8_t>(s[from])) : 1;
      continue;
    }
    fn(b, e);
    have_last = true;
    last_end = e;
    from = e;
  }
}

// ---- normalizers ----------------------------------------------------------------------------

namespace {

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::Form f) : form_(f) {}
  std::string apply(std::string_view s, Scratch&) const override {
    return unicode::normalize(s, form_);
  }

 private:
  unicode::Form form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  std::string apply(std::string_view s, Scratch&) const override { return unicode::to_lower(s); }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  std::string apply(std::string_view s, Scratch&) const override {
    return s.empty() ? std::string() : prepend_ + std::string(s);
  }

 private:
  std::string prepend_;
};

// {"pattern": ..., "content": ...} of the Replace normalizer and decoder.
class Replacement {
 public:
  Replacement(const json& j, const Where& w)
      : pattern_(require_key(j, "pattern", w), w["pattern"]),
        content_(get_string(require_key(j, "content", w), w["content"])) {}
  bool is_regex() const { return pattern_.is_regex(); }
  // `s` with every match of the pattern replaced by the content.
  std::string apply(std::string_view s, Scratch& sc) const {
    std::string out;
    out.reserve(s.size());
    size_t last = 0;
    pattern_.for_each_match(s, sc, [&](size_t b, size_t e) {
      out.append(s.data() + last, b - last);
      out += content_;
      last = e;
    });
    out.append(s.data() + last, s.size() - last);
    return out;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(const json& j, const Where& w) : replace_(j, w) {}
  std::string apply(std::string_view s, Scratch& sc) const override { return replace_.apply(s, sc); }

 private:
  Replacement replace_;
};

// Leading and trailing White_Space (Rust's str::trim_start / trim_end).
std::string_view strip_white_space(std::string_view s, bool left, bool right) {
  if (left) {
    size_t i = 0, len = 0;
    while (i < s.size() && unicode::is_white_space(unicode::decode(s, i, &len))) i += len;
    s.remove_prefix(i);
  }
  if (right) {
    size_t end = s.size();
    while (end > 0) {
      size_t k = end - 1, len = 0;
      while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
      if (!unicode::is_white_space(unicode::decode(s, k, &len))) break;
      end = k;
    }
    s = s.substr(0, end);
  }
  return s;
}

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string_view s, Scratch&) const override {
    return std::string(strip_white_space(s, left_, right_));
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> n) : steps_(std::move(n)) {}
  std::string apply(std::string_view s, Scratch& sc) const override {
    std::string cur(s);
    for (const auto& n : steps_) cur = n->apply(cur, sc);
    return cur;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

struct NormalizerType {
  const char* name;
  std::unique_ptr<Normalizer> (*make)(const json& j, const Where& w);
};

std::unique_ptr<Normalizer> make_normalizer_sequence(const json& j, const Where& w);

// Every normalizer type slmc reads, once.
const NormalizerType kNormalizerTypes[] = {
    {"NFC", [](const json&, const Where&) -> std::unique_ptr<Normalizer> {
       return std::make_unique<UnicodeNormalizer>(unicode::Form::kNFC);
     }},
    {"NFD", [](const json&, const Where&) -> std::unique_ptr<Normalizer> {
       return std::make_unique<UnicodeNormalizer>(unicode::Form::kNFD);
     }},
    {"NFKC", [](const json&, const Where&) -> std::unique_ptr<Normalizer> {
       return std::make_unique<UnicodeNormalizer>(unicode::Form::kNFKC);
     }},
    {"NFKD", [](const json&, const Where&) -> std::unique_ptr<Normalizer> {
       return std::make_unique<UnicodeNormalizer>(unicode::Form::kNFKD);
     }},
    {"Lowercase", [](const json&, const Where&) -> std::unique_ptr<Normalizer> {
       return std::make_unique<LowercaseNormalizer>();
     }},
    {"Prepend", [](const json& j, const Where& w) -> std::unique_ptr<Normalizer> {
       return std::make_unique<PrependNormalizer>(
           get_string(require_key(j, "prepend", w), w["prepend"]));
     }},
    {"Replace", [](const json& j, const Where& w) -> std::unique_ptr<Normalizer> {
       return std::make_unique<ReplaceNormalizer>(j, w);
     }},
    {"Strip", [](const json& j, const Where& w) -> std::unique_ptr<Normalizer> {
       return std::make_unique<StripNormalizer>(opt_bool(j, "strip_left", true, w),
                                                opt_bool(j, "strip_right", true, w));
     }},
    {"Sequence", make_normalizer_sequence},
};

std::unique_ptr<Normalizer> make_normalizer_sequence(const json& j, const Where& w) {
  return std::make_unique<SequenceNormalizer>(make_steps(j, "normalizers", w, make_normalizer));
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& w) {
  return make_from(kNormalizerTypes, "normalizer", j, w);
}

// ---- pre-tokenizers -------------------------------------------------------------------------

namespace {

// Rust's SplitDelimiterBehavior, as tokenizer.json spells it.
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct BehaviorName {
  const char* name;
  Behavior b;
};
constexpr BehaviorName kBehaviors[] = {{"Removed", Behavior::kRemoved},
                                       {"Isolated", Behavior::kIsolated},
                                       {"MergedWithPrevious", Behavior::kMergedWithPrevious},
                                       {"MergedWithNext", Behavior::kMergedWithNext},
                                       {"Contiguous", Behavior::kContiguous}};

Behavior parse_behavior(const json& v, const Where& w) {
  const std::string s = get_string(v, w);
  for (const BehaviorName& b : kBehaviors)
    if (s == b.name) return b.b;
  w.fail("unknown behavior ", tokenizer_internal::quote(s), " (known: ", names_of(kBehaviors),
         ")");
}

// NormalizedString::split of the Rust crate, streamed: takes the pattern's segments of `s` in
// order (matches and the gaps between them, covering `s`) and emits the pieces `behavior` makes
// of them without building the list.
class SplitEmitter {
 public:
  SplitEmitter(Behavior b, std::string_view s, bool at_origin, PieceFn out)
      : behavior_(b), s_(s), at_origin_(at_origin), out_(out) {}

  void segment(size_t b, size_t e, bool match) {
    switch (behavior_) {
      case Behavior::kIsolated:
        emit(b, e);
        break;
      case Behavior::kRemoved:
        if (!match) emit(b, e);
        break;
      case Behavior::kMergedWithPrevious:  // a match joins the non-match before it
        if (match && !prev_match_ && held_) {
          held_e_ = e;
        } else {
          flush();
          hold(b, e);
        }
        break;
      case Behavior::kMergedWithNext:  // a match joins the non-match after it
        if (match) {
          flush();
          hold(b, e);
        } else if (held_) {
          held_ = false;
          emit(held_b_, e);
        } else {
          emit(b, e);
        }
        break;
      case Behavior::kContiguous:  // runs of segments with the same flag become one
        if (held_ && match == prev_match_) {
          held_e_ = e;
        } else {
          flush();
          hold(b, e);
        }
        break;
    }
    prev_match_ = match;
  }

  void finish() { flush(); }

 private:
  void emit(size_t b, size_t e) {
    if (e > b) out_(s_.substr(b, e - b), at_origin_ && b == 0);
  }
  void hold(size_t b, size_t e) {
    held_ = true;
    held_b_ = b;
    held_e_ = e;
  }
  void flush() {
    if (held_) emit(held_b_, held_e_);
    held_ = false;
  }

  Behavior behavior_;
  std::string_view s_;
  bool at_origin_;
  PieceFn out_;
  bool prev_match_ = false;
  bool held_ = false;
  size_t held_b_ = 0, held_e_ = 0;
};

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(const json& j, const Where& w)
      : pattern_(require_key(j, "pattern", w), w["pattern"]),
        behavior_(parse_behavior(require_key(j, "behavior", w), w["behavior"])),
        invert_(opt_bool(j, "invert", false, w)) {}

  void split(std::string_view s, bool at_origin, Scratch& sc, PieceFn out) const override {
    SplitEmitter em(behavior_, s, at_origin, out);
    size_t prev = 0;
    pattern_.for_each_match(s, sc, [&](size_t b, size_t e) {
      if (prev != b) em.segment(prev, b, invert_);
      em.segment(b, e, !invert_);
      prev = e;
    });
    if (prev != s.size()) em.segment(prev, s.size(), invert_);
    em.finish();
  }
  void patterns(std::vector<std::string>* out) const override {
    out->push_back(pattern_.source());
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void split(std::string_view s, bool at_origin, Scratch&, PieceFn out) const override {
    SplitEmitter em(individual_ ? Behavior::kIsolated : Behavior::kContiguous, s, at_origin, out);
    size_t prev = 0;
    for (size_t i = 0, len = 0; i < s.size(); i += len) {
      if (!unicode::is_numeric(unicode::decode(s, i, &len))) continue;
      if (prev < i) em.segment(prev, i, false);
      em.segment(i, i + len, true);
      prev = i + len;
    }
    if (prev < s.size()) em.segment(prev, s.size(), false);
    em.finish();
  }

 private:
  bool individual_;
};

enum class Prepend { kFirst, kNever, kAlways };

// prepend_scheme, or the legacy add_prefix_space (the Rust crate's rules, with a missing
// prepend_scheme read from add_prefix_space).
Prepend parse_prepend(const json& j, const Where& w) {
  const json* scheme = find_key(j, "prepend_scheme");
  const json* legacy = find_key(j, "add_prefix_space");
  const bool has_legacy = legacy != nullptr && !legacy->is_null();
  const bool add = has_legacy ? get_bool(*legacy, w["add_prefix_space"]) : true;
  if (scheme == nullptr || scheme->is_null()) return add ? Prepend::kAlways : Prepend::kNever;
  const std::string s = get_string(*scheme, w["prepend_scheme"]);
  Prepend p;
  if (s == "first") {
    p = Prepend::kFirst;
  } else if (s == "never") {
    p = Prepend::kNever;
  } else if (s == "always") {
    p = Prepend::kAlways;
  } else {
    w["prepend_scheme"].fail("unknown value ", tokenizer_internal::quote(s),
                             " (known: first, never, always)");
  }
  if (has_legacy && !add && p != Prepend::kNever) {
    w.fail("add_prefix_space false does not match prepend_scheme \"", s, "\"");
  }
  return p;
}

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(const json& j, const Where& w)
      : rep_(utf8_of(single_char(require_key(j, "replacement", w), w["replacement"]))),
        prepend_(parse_prepend(j, w)),
        split_(opt_bool(j, "split", true, w)) {}

  void split(std::string_view s, bool at_origin, Scratch&, PieceFn out) const override {
    std::string buf;
    buf.reserve(s.size() + rep_.size());
    for (const char c : s) {
      if (c == ' ') {
        buf += rep_;
      } else {
        buf.push_back(c);
      }
    }
    const bool starts = buf.compare(0, rep_.size(), rep_) == 0;
    if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && at_origin))) {
      buf.insert(0, rep_);
    }
    if (!split_) {
      if (!buf.empty()) out(buf, at_origin);
      return;
    }
    SplitEmitter em(Behavior::kMergedWithNext, buf, at_origin, out);
    size_t prev = 0;
    for (size_t pos = buf.find(rep_); pos != std::string::npos;
         pos = buf.find(rep_, pos + rep_.size())) {
      if (prev < pos) em.segment(prev, pos, false);
      em.segment(pos, pos + rep_.size(), true);
      prev = pos + rep_.size();
    }
    if (prev < buf.size()) em.segment(prev, buf.size(), false);
    em.finish();
  }

 private:
  std::string rep_;
  Prepend prepend_;
  bool split_;
};

// GPT-2's pre-tokenization regex, used by ByteLevel when use_regex is true.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// The splitting half of ByteLevel; the byte mapping is the BPE model's (it reads the pieces'
// bytes through GPT-2's byte alphabet).
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(const json& j, const Where& w)
      : add_prefix_space_(opt_bool(j, "add_prefix_space", false, w)) {
    if (opt_bool(j, "use_regex", true, w)) {
      regex_ = std::make_unique<Regex>(onig_to_pcre2(kGpt2Pattern), w.what());
    }
  }

  void split(std::string_view s, bool at_origin, Scratch& sc, PieceFn out) const override {
    std::string buf;
    if (add_prefix_space_ && (s.empty() || s[0] != ' ')) {
      buf.reserve(s.size() + 1);
      buf.push_back(' ');
      buf.append(s);
      s = buf;
    }
    if (!regex_) {
      if (!s.empty()) out(s, at_origin);
      return;
    }
    // The pattern matches every character, so Isolated splitting is the list of matches.
    Regex::Matcher& m = sc.matcher(*regex_);
    size_t from = 0, b = 0, e = 0, prev = 0;
    while (from < s.size() && m.find(s, from, &b, &e)) {
      if (prev < b) out(s.substr(prev, b - prev), at_origin && prev == 0);
      if (e > b) out(s.substr(b, e - b), at_origin && b == 0);
      prev = e;
      from = e > b ? e : e + unicode::char_len(static_cast<uint8_t>(s[e]));
    }
    if (prev < s.size()) out(s.substr(prev), at_origin && prev == 0);
  }
  void patterns(std::vector<std::string>* out) const override {
    if (regex_) out->push_back(kGpt2Pattern);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

// At most this many pre-tokenizers in one pipeline (real files use up to four): the stages call
// each other, so their number is the depth of the call stack.
constexpr size_t kMaxPreTokenizers = 64;

class SequencePreTokenizer final : public PreTokenizer {
 public:
  // Nested sequences are flattened: a sequence of sequences runs the same stages in order.
  SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps, const Where& w) {
    for (auto& p : steps) {
      if (auto* seq = dynamic_cast<SequencePreTokenizer*>(p.get())) {
        for (auto& q : seq->steps_) steps_.push_back(std::move(q));
      } else {
        steps_.push_back(std::move(p));
      }
    }
    if (steps_.size() > kMaxPreTokenizers) {
      w.fail("holds ", steps_.size(), " pre-tokenizers (at most ", kMaxPreTokenizers, ")");
    }
  }
  void split(std::string_view s, bool at_origin, Scratch& sc, PieceFn out) const override {
    run(0, s, at_origin, sc, out);
  }
  void patterns(std::vector<std::string>* out) const override {
    for (const auto& p : steps_) p->patterns(out);
  }

 private:
  void run(size_t i, std::string_view s, bool at_origin, Scratch& sc, PieceFn out) const {
    if (i == steps_.size()) {
      out(s, at_origin);
      return;
    }
    steps_[i]->split(s, at_origin, sc,
                     [&](std::string_view piece, bool o) { run(i + 1, piece, o, sc, out); });
  }
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

std::unique_ptr<PreTokenizer> make_pre(const json& j, const Where& w, bool is_last,
                                       bool* byte_level);

struct PreTokenizerType {
  const char* name;
  std::unique_ptr<PreTokenizer> (*make)(const json& j, const Where& w, bool is_last,
                                        bool* byte_level);
};

// Every pre-tokenizer type slmc reads, once.
const PreTokenizerType kPreTokenizerTypes[] = {
    {"ByteLevel",
     [](const json& j, const Where& w, bool is_last, bool* byte_level)
         -> std::unique_ptr<PreTokenizer> {
       if (!is_last) {
         w.fail("ByteLevel must be the last pre-tokenizer (it maps the text to bytes for the "
                "model)");
       }
       *byte_level = true;
       return std::make_unique<ByteLevelPreTokenizer>(j, w);
     }},
    {"Split",
     [](const json& j, const Where& w, bool, bool*) -> std::unique_ptr<PreTokenizer> {
       return std::make_unique<SplitPreTokenizer>(j, w);
     }},
    {"Metaspace",
     [](const json& j, const Where& w, bool, bool*) -> std::unique_ptr<PreTokenizer> {
       return std::make_unique<MetaspacePreTokenizer>(j, w);
     }},
    {"Digits",
     [](const json& j, const Where& w, bool, bool*) -> std::unique_ptr<PreTokenizer> {
       return std::make_unique<DigitsPreTokenizer>(opt_bool(j, "individual_digits", false, w));
     }},
    {"Sequence",
     [](const json& j, const Where& w, bool is_last, bool* byte_level)
         -> std::unique_ptr<PreTokenizer> {
       const json& list = require_key(j, "pretokenizers", w);
       if (!list.is_array()) {
         w["pretokenizers"].fail("must be a list, got ", checked_json::excerpt(list));
       }
       std::vector<std::unique_ptr<PreTokenizer>> steps;
       for (size_t i = 0; i < list.size(); ++i) {
         auto p = make_pre(list[i], w["pretokenizers"][i], is_last && i + 1 == list.size(),
                           byte_level);
         if (p) steps.push_back(std::move(p));
       }
       return std::make_unique<SequencePreTokenizer>(std::move(steps), w);
     }},
};

std::unique_ptr<PreTokenizer> make_pre(const json& j, const Where& w, bool is_last,
                                       bool* byte_level) {
  return make_from(kPreTokenizerTypes, "pre-tokenizer", j, w, is_last, byte_level);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& w, bool* byte_level) {
  *byte_level = false;
  return make_pre(j, w, /*is_last=*/true, byte_level);
}

// ---- decoders -------------------------------------------------------------------------------

namespace {

// The bytes a byte-level token stands for: each character's byte when every character is in
// the alphabet, else the token's own UTF-8 (the Rust crate's rule).
void append_byte_level(std::string_view t, std::string* out) {
  if (!tokenizer_internal::byte_level_bytes(t, out)) out->append(t);
}

std::string lossy(std::string s) {
  std::string fixed;
  return unicode::to_valid(s, &fixed) ? fixed : s;
}

class ByteLevelDecoder final : public Decoder {
 public:
  void decode(std::vector<std::string>* tokens, DecodeState& st) const override {
    std::string bytes;
    for (const std::string& t : *tokens) append_byte_level(t, &bytes);
    tokens->assign(1, st.stream ? bytes : lossy(std::move(bytes)));
  }
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode(std::vector<std::string>* tokens, DecodeState& st) const override {
    std::vector<std::string> out;
    std::string pending;  // consecutive byte tokens
    auto flush = [&] {
      if (pending.empty()) return;
      if (st.stream || valid_utf8(pending)) {
        out.push_back(pending);
      } else {  // one U+FFFD per byte, as the Rust crate writes
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : *tokens) {
      const int b = tokenizer_internal::byte_token_value(t);
      if (b >= 0) {
        pending.push_back(static_cast<char>(b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens->swap(out);
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(const json& j, const Where& w)
      : rep_(single_char(require_key(j, "replacement", w), w["replacement"])),
        prepend_(parse_prepend(j, w)) {}
  void decode(std::vector<std::string>* tokens, DecodeState& st) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      const bool first = st.stream ? st.first : i == 0;
      const std::string& t = (*tokens)[i];
      std::string out;
      for (size_t k = 0, len = 0; k < t.size(); k += len) {
        const uint32_t cp = unicode::decode_any(t, k, &len);
        if (cp != rep_) {
          out.append(t, k, len);
        } else if (!(first && prepend_ != Prepend::kNever)) {
          out.push_back(' ');
        }  // the first token drops every replacement character (the Rust crate's rule)
      }
      (*tokens)[i] = std::move(out);
    }
  }

 private:
  uint32_t rep_;
  Prepend prepend_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(const json& j, const Where& w) : replace_(j, w) {}
  void decode(std::vector<std::string>* tokens, DecodeState&) const override {
    Scratch sc;
    for (std::string& t : *tokens) {
      // A regex reads UTF-8 only: a streamed byte of a split character is left as it is.
      if (replace_.is_regex() && !valid_utf8(t)) continue;
      t = replace_.apply(t, sc);
    }
  }

 private:
  Replacement replace_;
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(const json& j, const Where& w)
      : content_(single_char(require_key(j, "content", w), w["content"])),
        start_(get_count(j, "start", w)),
        stop_(get_count(j, "stop", w)) {}
  void decode(std::vector<std::string>* tokens, DecodeState& st) const override {
    // Streaming after a Fuse, the list stands for the whole text: only its start is known.
    const bool whole = st.stream && st.fused;
    const int64_t start = whole && !st.first ? 0 : start_;
    const int64_t stop = whole ? 0 : stop_;
    for (std::string& t : *tokens) {
      std::vector<size_t> at;  // character offsets
      for (size_t k = 0, len = 0; k < t.size(); k += len) {
        unicode::decode_any(t, k, &len);
        at.push_back(k);
      }
      const int64_t n = static_cast<int64_t>(at.size());
      int64_t cut_start = 0, cut_stop = n;
      for (int64_t i = 0; i < std::min(start, n); ++i) {
        size_t len;
        if (unicode::decode_any(t, at[i], &len) != content_) break;
        cut_start = i + 1;
      }
      for (int64_t i = 0; i < std::min(stop, n); ++i) {
        const int64_t idx = n - i - 1;
        size_t len;
        if (unicode::decode_any(t, at[idx], &len) != content_) break;
        cut_stop = idx;
      }
      if (cut_stop <= cut_start) {
        t.clear();
      } else {
        const size_t b = cut_start < n ? at[cut_start] : t.size();
        const size_t e = cut_stop < n ? at[cut_stop] : t.size();
        t = t.substr(b, e - b);
      }
    }
  }

 private:
  uint32_t content_;
  int64_t start_, stop_;
};

class FuseDecoder final : public Decoder {
 public:
  void decode(std::vector<std::string>* tokens, DecodeState& st) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    tokens->assign(1, std::move(all));
    st.fused = true;
  }
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void decode(std::vector<std::string>* tokens, DecodeState& st) const override {
    for (const auto& d : steps_) d->decode(tokens, st);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

struct DecoderType {
  const char* name;
  std::unique_ptr<Decoder> (*make)(const json& j, const Where& w);
};

// Every decoder type slmc reads, once.
const DecoderType kDecoderTypes[] = {
    {"ByteLevel", [](const json&, const Where&) -> std::unique_ptr<Decoder> {
       return std::make_unique<ByteLevelDecoder>();
     }},
    {"ByteFallback", [](const json&, const Where&) -> std::unique_ptr<Decoder> {
       return std::make_unique<ByteFallbackDecoder>();
     }},
    {"Metaspace", [](const json& j, const Where& w) -> std::unique_ptr<Decoder> {
       return std::make_unique<MetaspaceDecoder>(j, w);
     }},
    {"Replace", [](const json& j, const Where& w) -> std::unique_ptr<Decoder> {
       return std::make_unique<ReplaceDecoder>(j, w);
     }},
    {"Strip", [](const json& j, const Where& w) -> std::unique_ptr<Decoder> {
       return std::make_unique<StripDecoder>(j, w);
     }},
    {"Fuse", [](const json&, const Where&) -> std::unique_ptr<Decoder> {
       return std::make_unique<FuseDecoder>();
     }},
    {"Sequence", [](const json& j, const Where& w) -> std::unique_ptr<Decoder> {
       return std::make_unique<SequenceDecoder>(make_steps(j, "decoders", w, make_decoder));
     }},
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const Where& w) {
  return make_from(kDecoderTypes, "decoder", j, w);
}

}  // namespace slmc::hf
