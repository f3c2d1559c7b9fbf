#include "compress/core/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "compress/core/error.h"

namespace slmc {

namespace {

std::string pattern_excerpt(const std::string& p) {
  return p.size() <= 60 ? p : p.substr(0, 60) + "...";
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof buf);
  return n < 0 ? "error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buf));
}

pcre2_code* C(void* p) { return static_cast<pcre2_code*>(p); }

}  // namespace

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += len;
  }
  return true;
}

Regex::Regex(const std::string& pattern, const std::string& origin)
    : Regex(pattern, origin, Options{}) {}

Regex::Regex(const std::string& pattern, const std::string& origin, const Options& opt)
    : pattern_(pattern), origin_(origin) {
  compile(opt);
}

void Regex::compile(const Options& opt) {
  SLMC_CHECK(pattern_.size() <= opt.max_pattern_bytes, origin_, ": regex of ", pattern_.size(),
             " bytes is longer than the limit of ", opt.max_pattern_bytes, ": ",
             pattern_excerpt(pattern_));
  SLMC_CHECK(valid_utf8(pattern_), origin_, ": regex is not valid UTF-8: ",
             pattern_excerpt(pattern_));
  uint32_t flags = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (opt.caseless) flags |= PCRE2_CASELESS;
  // Nesting is bounded at compile time too: a pattern nested thousands deep is refused here.
  pcre2_compile_context* cctx = pcre2_compile_context_create(nullptr);
  pcre2_set_parens_nest_limit(cctx, 250);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                                   flags, &err, &off, cctx);
  pcre2_compile_context_free(cctx);
  SLMC_CHECK(code != nullptr, origin_, ": regex does not compile at offset ", off, ": ",
             pcre2_message(err), ": ", pattern_excerpt(pattern_));
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  pcre2_match_context* mctx = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mctx, opt.match_limit);
  pcre2_set_depth_limit(mctx, opt.depth_limit);
  mctx_ = mctx;
}

Regex::~Regex() {
  if (mctx_) pcre2_match_context_free(static_cast<pcre2_match_context*>(mctx_));
  if (code_) pcre2_code_free(C(code_));
}

Regex::Regex(Regex&& o) noexcept
    : pattern_(std::move(o.pattern_)), origin_(std::move(o.origin_)), code_(o.code_),
      mctx_(o.mctx_), jit_(o.jit_) {
  o.code_ = nullptr;
  o.mctx_ = nullptr;
}

Regex& Regex::operator=(Regex&& o) noexcept {
  if (this != &o) {
    this->~Regex();
    new (this) Regex(std::move(o));
  }
  return *this;
}

bool Regex::full_match(std::string_view subject) const {
  SLMC_CHECK(valid_utf8(subject), origin_, ": subject is not valid UTF-8");
  Matcher m(*this);
  const int rc = pcre2_match(C(code_), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                             subject.size(), 0,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_NO_UTF_CHECK,
                             static_cast<pcre2_match_data*>(m.md_),
                             static_cast<pcre2_match_context*>(mctx_));
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  SLMC_CHECK(rc >= 0, origin_, ": regex ", pattern_excerpt(pattern_), " failed on a subject of ",
             subject.size(), " bytes: ", pcre2_message(rc));
  return true;
}

Regex::Matcher::Matcher(const Regex& re)
    : re_(re), md_(pcre2_match_data_create_from_pattern(C(re.code_), nullptr)) {
  SLMC_CHECK(md_ != nullptr, re.origin_, ": out of memory for regex match data");
}

Regex::Matcher::~Matcher() { pcre2_match_data_free(static_cast<pcre2_match_data*>(md_)); }

bool Regex::Matcher::find(std::string_view subject, size_t from, size_t* begin, size_t* end) {
  if (from > subject.size()) return false;
  pcre2_match_data* md = static_cast<pcre2_match_data*>(md_);
  const uint32_t opts = PCRE2_NO_UTF_CHECK;
  const int rc = re_.jit_
                     ? pcre2_jit_match(C(re_.code_), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                                       subject.size(), from, opts, md,
                                       static_cast<pcre2_match_context*>(re_.mctx_))
                     : pcre2_match(C(re_.code_), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                                   subject.size(), from, opts, md,
                                   static_cast<pcre2_match_context*>(re_.mctx_));
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  SLMC_CHECK(rc >= 0, re_.origin_, ": regex ", pattern_excerpt(re_.pattern_),
             " failed on a subject of ", subject.size(), " bytes: ", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *begin = ov[0];
  *end = ov[1];
  return true;
}

}  // namespace slmc
