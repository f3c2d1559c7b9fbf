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

}  // namespace slmc
