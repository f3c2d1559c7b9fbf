// Read-only memory mappings of whole files and overflow-checked size arithmetic: what every
// reader of an untrusted binary file needs (compress/io loaders, the .slm reader of the runtime).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace slmc {

// A read-only memory mapping of a whole regular file. Throws slmc::Error naming the path if it
// is missing, not a regular file, or cannot be mapped. An empty file maps to data() == nullptr.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hands the mapping to the caller, who must unmap_file() it.
  const uint8_t* release();

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

void unmap_file(const uint8_t* data, size_t size);

// Overflow-checked unsigned arithmetic: false if the result does not fit.
inline bool mul_u64(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool add_u64(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

// Index of the first NaN or infinite value of x[0..n), or -1 if all are finite. Weights read from
// a file go through this before anything computes with them (NaN would propagate silently).
inline int64_t first_non_finite(const float* x, int64_t n) {
  // Block-wise OR of "exponent all ones" (vectorizes, unlike std::isfinite in a loop); the exact
  // position only when a block has one.
  constexpr int64_t kBlock = 1024;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    uint32_t bad = 0;
    for (int64_t i = b; i < e; ++i) {
      uint32_t bits;
      __builtin_memcpy(&bits, x + i, 4);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad == 0) continue;
    for (int64_t i = b; i < e; ++i) {
      uint32_t bits;
      __builtin_memcpy(&bits, x + i, 4);
      if ((bits & 0x7f800000u) == 0x7f800000u) return i;
    }
  }
  return -1;
}

}  // namespace slmc
