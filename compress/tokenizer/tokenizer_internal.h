// Helpers shared by the tokenizer implementations; not part of the library's interface.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "compress/tokenizer/tokenizer.h"

namespace slmc::tokenizer_internal {

// `s` in double quotes with control bytes, quotes, backslashes and bytes >= 0x7f escaped as
// \xNN, cut after `max_bytes` bytes: safe to put in a one-line error message.
std::string quote(std::string_view s, size_t max_bytes = 40);

// GPT-2's bytes_to_unicode(): the character (as UTF-8) that byte b stands for in byte-level BPE
// vocabularies. Printable Latin-1 bytes map to themselves, the other 68 bytes, in increasing
// order, to U+0100, U+0101, ...
const std::array<std::string, 256>& byte_alphabet();

// Appends to `*out` the bytes `token` (valid UTF-8) stands for in that alphabet. Returns false,
// leaving `*out` as it was, when a character of `token` is not in the alphabet.
bool byte_level_bytes(std::string_view token, std::string* out);

// A non-owning reference to a callable, for callbacks in hot loops (no allocation, unlike
// std::function). The callable must outlive the reference.
template <typename Sig>
class FunctionRef;
template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor): used like a function parameter
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...);
        }) {}
  R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, Args...);
};

// The byte of a byte-fallback token "<0xAB>" (two hex digits, either case), or -1 for any other
// token: run.c's sscanf("<0x%02hhX>") and the Rust tokenizers crate's ByteFallback agree on it.
inline int byte_token_value(std::string_view t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (size_t k = 3; k < 5; ++k) {
    const char c = t[k];
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// Whether `bytes` is slmc's byte-level tokenizer.json (what write_byte_tokenizer_json writes).
bool is_byte_tokenizer_json(std::string_view bytes);

// Recognises slmc's byte-level `tokenizer.json` (what write_byte_tokenizer_json writes), the
// only content of kind "byte"; anything else throws "unsupported tokenizer.json: ..." naming
// `path`.
std::unique_ptr<Tokenizer> load_byte_tokenizer_json(std::string_view bytes,
                                                    const std::string& path);

// Piece -> id for the encoders' hot loops: open addressing over views of strings that outlive
// the index; no allocation or node chasing per lookup, unlike std::unordered_map.
class PieceIndex {
 public:
  // Inserts `key` unless present; returns the id stored for `key` (`id` if inserted).
  int32_t insert(std::string_view key, int32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    Slot& s = slots_[probe(slots_, key)];
    if (s.id >= 0) return s.id;
    s = Slot{key.data(), static_cast<uint32_t>(key.size()), id};
    ++size_;
    return id;
  }

  // The id of `key`, or -1.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    return slots_[probe(slots_, key)].id;
  }

  size_t size() const { return size_; }

  template <typename F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.id >= 0) f(std::string_view(s.data, s.size), s.id);
    }
  }

 private:
  struct Slot {
    const char* data = nullptr;
    uint32_t size = 0;
    int32_t id = -1;  // -1: empty
  };

  static uint64_t hash(std::string_view k) {
    uint64_t h = 0xcbf29ce484222325ull ^ k.size();  // FNV-1a
    for (const char c : k) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
    return h ^ (h >> 29);
  }

  // The slot holding `key`, or the empty slot where it would go.
  static size_t probe(const std::vector<Slot>& slots, std::string_view key) {
    const size_t mask = slots.size() - 1;
    for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.id < 0 || (s.size == key.size() && std::memcmp(s.data, key.data(), key.size()) == 0)) {
        return i;
      }
    }
  }

  void grow() {
    std::vector<Slot> bigger(slots_.empty() ? 16 : slots_.size() * 2);
    for (const Slot& s : slots_) {
      if (s.id >= 0) bigger[probe(bigger, std::string_view(s.data, s.size))] = s;
    }
    slots_.swap(bigger);
  }

  std::vector<Slot> slots_;  // size a power of two, at most half full
  size_t size_ = 0;
};

}  // namespace slmc::tokenizer_internal
