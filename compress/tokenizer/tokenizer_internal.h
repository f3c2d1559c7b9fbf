// Helpers shared by the tokenizer implementations; not part of the library's interface.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compress/tokenizer/tokenizer.h"

namespace slmc::tokenizer_internal {

// `s` in double quotes with control bytes, quotes, backslashes and bytes >= 0x7f escaped as
// \xNN, cut after `max_bytes` bytes: safe to put in a one-line error message.
std::string quote(std::string_view s, size_t max_bytes = 40);

// Recognises slmc's byte-level `tokenizer.json` (what write_byte_tokenizer_json writes); anything
// else throws "unsupported tokenizer.json: ...; pass --tokenizer" naming `path`.
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
