#include "compress/tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "compress/core/error.h"

namespace slmc::unicode {

uint32_t decode(std::string_view s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
  const uint8_t c = p[0];
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  if (c < 0xE0) {
    *len = 2;
    return (uint32_t{c & 0x1Fu} << 6) | (p[1] & 0x3Fu);
  }
  if (c < 0xF0) {
    *len = 3;
    return (uint32_t{c & 0x0Fu} << 12) | (uint32_t{p[1] & 0x3Fu} << 6) | (p[2] & 0x3Fu);
  }
  *len = 4;
  return (uint32_t{c & 0x07u} << 18) | (uint32_t{p[1] & 0x3Fu} << 12) |
         (uint32_t{p[2] & 0x3Fu} << 6) | (p[3] & 0x3Fu);
}

void append(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// How many bytes the well-formed sequence starting at s[i] has, or 0 if it is ill-formed; on 0,
// `*bad` is the length of its maximal ill-formed prefix (at least 1): the bytes one U+FFFD
// replaces. Table 3-7 of the Unicode Standard (well-formed UTF-8 byte sequences).
size_t well_formed(const uint8_t* p, size_t n, size_t* bad) {
  const uint8_t c = p[0];
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    const bool ok = k < n && (k == 1 ? (p[k] >= lo && p[k] <= hi) : (p[k] & 0xC0) == 0x80);
    if (!ok) {
      *bad = k;
      return 0;
    }
  }
  return len;
}

}  // namespace

uint32_t decode_any(std::string_view s, size_t i, size_t* len) {
  size_t bad = 0;
  if (well_formed(reinterpret_cast<const uint8_t*>(s.data()) + i, s.size() - i, &bad) == 0) {
    *len = 1;
    return kReplacement;
  }
  return decode(s, i, len);
}

bool to_valid(std::string_view s, std::string* out) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0, bad = 0;
  while (i < n) {  // fast scan to the first problem
    const size_t len = well_formed(p + i, n - i, &bad);
    if (len == 0) break;
    i += len;
  }
  if (i == n) return false;
  out->assign(s.data(), i);
  while (i < n) {
    const size_t len = well_formed(p + i, n - i, &bad);
    if (len > 0) {
      out->append(s.data() + i, len);
      i += len;
    } else {
      append(out, kReplacement);
      i += bad;
    }
  }
  return true;
}

bool is_white_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_numeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_word(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  }
  if (cp == 0x200C || cp == 0x200D) return true;  // Join_Control
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

namespace {

// Cased and Case_Ignorable of the Unicode Standard's Final_Sigma condition (section 3.13), from
// the general categories (the derived properties are not in libutf8proc).
bool is_cased(uint32_t cp) {
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

bool is_case_ignorable(uint32_t cp) {
  switch (cp) {  // Word_Break MidLetter, MidNumLet, Single_Quote
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x5F4: case 0x2018:
    case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07:
    case 0xFF0E: case 0xFF1A:
      return true;
    default:
      break;
  }
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK;
}

}  // namespace

namespace {

std::string map_utf8proc(std::string_view s, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                   static_cast<utf8proc_ssize_t>(s.size()), &out,
                   static_cast<utf8proc_option_t>(options));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> hold(out, &std::free);
  // The input is valid UTF-8 (callers sanitize it first), so only running out of memory fails.
  SLMC_CHECK(n >= 0, "Unicode normalization failed: ", utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

}  // namespace

std::string normalize(std::string_view s, Form f) {
  int options = UTF8PROC_STABLE;
  switch (f) {
    case Form::kNFC: options |= UTF8PROC_COMPOSE; break;
    case Form::kNFD: options |= UTF8PROC_DECOMPOSE; break;
    case Form::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case Form::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  // ASCII is stable in every form, is never a mark, and no composition has an ASCII second
  // character: the text can be cut before any ASCII character. So only each run of non-ASCII
  // characters goes through libutf8proc, with the ASCII character before it (its possible
  // base, e.g. "e" + U+0301).
  std::string out;
  size_t done = 0;  // s[0, done) is in `out`
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < s.size() && static_cast<uint8_t>(s[end]) >= 0x80) ++end;
    const size_t begin = i > done ? i - 1 : i;  // the ASCII base, unless already written
    out.append(s.data() + done, begin - done);
    out += map_utf8proc(s.substr(begin, end - begin), options);
    done = end;
    i = end;
  }
  if (done == 0) return std::string(s);
  out.append(s.data() + done, s.size() - done);
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len;
    const uint32_t cp = decode(s, i, &len);
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
    } else if (cp == 0x130) {  // SpecialCasing: capital I with dot above -> i + combining dot
      out += "i\xCC\x87";
    } else if (cp == 0x3A3) {
      // Final_Sigma: a cased letter before (skipping case-ignorables), none after.
      bool before = false, after = false;
      for (size_t j = i; j > 0;) {
        size_t k = j - 1;
        while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
        size_t l;
        const uint32_t c = decode(s, k, &l);
        j = k;
        if (is_case_ignorable(c)) continue;
        before = is_cased(c);
        break;
      }
      for (size_t j = i + len; j < s.size();) {
        size_t l;
        const uint32_t c = decode(s, j, &l);
        j += l;
        if (is_case_ignorable(c)) continue;
        after = is_cased(c);
        break;
      }
      append(&out, before && !after ? 0x3C2 : 0x3C3);
    } else {
      append(&out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    }
    i += len;
  }
  return out;
}

}  // namespace slmc::unicode
