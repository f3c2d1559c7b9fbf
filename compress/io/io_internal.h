// Helpers shared by the readers in compress/io. Not part of the library's interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/core/mapped_file.h"

namespace slmc {
namespace io_internal {

// The mmap helper and overflow-checked arithmetic live in compress/core/mapped_file.h (the .slm
// reader of the runtime shares them); these names keep the readers here unchanged.
using ::slmc::add_u64;
using ::slmc::MappedFile;
using ::slmc::mul_u64;
using ::slmc::unmap_file;

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
