// Helpers shared by the readers in compress/io. Not part of the library's interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace slmc {
namespace io_internal {

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

// llama2.c legacy header: 7 little-endian int32.
struct Llama2cHeader {
  int32_t dim = 0;         // d_model
  int32_t hidden_dim = 0;  // ffn width
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;  // negative: untied classifier `wcls` stored at the end
  int32_t seq_len = 0;
};
inline constexpr size_t kLlama2cHeaderBytes = 7 * sizeof(int32_t);

Llama2cHeader parse_llama2c_header(const uint8_t* bytes);  // kLlama2cHeaderBytes bytes
std::string llama2c_header_str(const Llama2cHeader& h);    // "dim 64, hidden_dim 172, ..."

// Checks every field (positive, divisible, even head size). Returns "" if consistent, else the
// first problem ("n_heads must be > 0, got -3").
std::string llama2c_header_problem(const Llama2cHeader& h);

// Total file size in bytes the header implies (header included). False on overflow. The header
// must be consistent (llama2c_header_problem() == "").
bool llama2c_expected_size(const Llama2cHeader& h, uint64_t* bytes);

}  // namespace io_internal
}  // namespace slmc
