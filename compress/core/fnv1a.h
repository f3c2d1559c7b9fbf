// FNV-1a, 64 bits: a fingerprint of inputs (weights, tokens, options) that tells "the same" from
// "changed by mistake" in caches and checkpoints. Not cryptographic: it does not resist a
// deliberately crafted collision.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace slmc {

class Fnv1a64 {
 public:
  Fnv1a64& add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 0x100000001b3ull;
    return *this;
  }
  // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
  Fnv1a64& add(std::string_view s) {
    add_pod(static_cast<uint64_t>(s.size()));
    return add(s.data(), s.size());
  }
  template <typename T>
  Fnv1a64& add_pod(const T& v) {
    return add(&v, sizeof v);
  }
  uint64_t value() const { return h_; }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

// "N tokens, fnv1a64 <hex>" of a token stream (its length and int32 ids).
inline std::string fnv1a64_tokens(const std::vector<int32_t>& ids) {
  Fnv1a64 h;
  h.add_pod(static_cast<uint64_t>(ids.size()));
  h.add(ids.data(), ids.size() * sizeof(int32_t));
  return std::to_string(ids.size()) + " tokens, fnv1a64 " + h.hex();
}

}  // namespace slmc
