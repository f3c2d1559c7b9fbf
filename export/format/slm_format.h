// The .slm container: what `slmc export` writes and the runtime mmaps.
//
//   offset 0   fixed header, 128 bytes, little-endian (SlmHeader below)
//   ...        ModelSpec as JSON (ModelSpec::to_json)
//   ...        tokenizer blob: the tokenizer file's bytes as-is, with its kind in the header
//   ...        tensor table: n_tensors records
//                uint32 name_len, name bytes, uint32 format (codec::Format id), uint32 n_dims,
//                int64 dims[n_dims] (row-major, dims[0] = rows), uint64 offset, uint64 n_bytes
//   ...        tensor data, each tensor at an offset aligned to 64 bytes (kSlmAlign)
//
// The reader checks every field and every offset against the file size before touching data:
// magic, version (a future version is refused), header size, section bounds, table records,
// known format ids, dims positive and consistent with n_bytes, alignment, no overlaps.
//
// Layout rules beyond the fields above, all enforced by the reader:
//   - header_bytes == 128; reserved bytes, and tokenizer_kind's bytes after its NUL, are zero.
//   - spec, tokenizer and table lie in [header_bytes, data_offset) and do not overlap; the spec
//     is not empty.
//   - tokenizer_kind "" means no tokenizer (tokenizer_bytes 0); "byte" may have 0 bytes (the
//     built-in byte tokenizer); every other kind holds its tokenizer file's bytes.
//   - the table is exactly n_tensors records, nothing after them; names are 1..kSlmMaxNameBytes
//     bytes without control bytes, unique.
//   - data_offset is a multiple of kSlmAlign; every tensor lies in [data_offset, file_bytes).
//   - a row is the last dim: n_bytes == codec::row_bytes(format, dims[n_dims-1]) * (product of
//     the other dims).
//   - the tensors are exactly the names and shapes expected_tensors(spec) declares.
// The writer's bytes are deterministic: spec, tokenizer and table back to back right after the
// header, tensors in the order added, each at the next multiple of kSlmAlign, every gap zero,
// file_bytes the end of the last tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/core/model_spec.h"
#include "quantize/codec/formats.h"

namespace slmc::format {

inline constexpr char kSlmMagic[8] = {'S', 'L', 'M', 'C', 'M', 'O', 'D', 'L'};
inline constexpr uint32_t kSlmVersion = 1;
inline constexpr uint64_t kSlmAlign = 64;
inline constexpr uint32_t kSlmMaxNameBytes = 256;
inline constexpr uint32_t kSlmMaxDims = 4;
// The tokenizer kinds the container accepts (Tokenizer::kind() spellings); "" is none.
inline constexpr const char* kSlmTokenizerKinds[] = {"sentencepiece", "llama2c", "byte", "hf"};
bool slm_tokenizer_kind_known(const std::string& kind);  // one of kSlmTokenizerKinds

struct SlmHeader {
  char magic[8];          // kSlmMagic
  uint32_t version;       // kSlmVersion
  uint32_t header_bytes;  // sizeof(SlmHeader)
  uint64_t file_bytes;    // total file size
  uint64_t spec_offset, spec_bytes;
  uint64_t tokenizer_offset, tokenizer_bytes;
  char tokenizer_kind[16];  // "sentencepiece", "llama2c", "byte", or "" (no tokenizer)
  uint64_t table_offset, table_bytes;
  uint64_t n_tensors;
  uint64_t data_offset;  // first tensor byte (aligned)
  uint8_t reserved[24];  // zero (pads the header to 128 bytes)
};
static_assert(sizeof(SlmHeader) == 128, "the .slm header is 128 bytes");

struct SlmTensor {
  std::string name;  // canonical name, e.g. "blk.0.attn_q.weight"
  codec::Format format = codec::Format::kF32;
  std::vector<int64_t> shape;  // (rows, cols) for matrices, (n) for vectors
  uint64_t offset = 0;         // absolute file offset
  uint64_t n_bytes = 0;
};

// A validated, memory-mapped .slm file.
class SlmFile {
 public:
  explicit SlmFile(const std::string& path);  // throws slmc::Error naming the file and field
  ~SlmFile();
  SlmFile(const SlmFile&) = delete;
  SlmFile& operator=(const SlmFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& spec_json() const { return spec_json_; }
  const ModelSpec& spec() const { return spec_; }  // parsed and validated spec_json()
  const std::string& tokenizer_kind() const { return tokenizer_kind_; }
  // The tokenizer file's bytes (points into the mapping; empty if none).
  const uint8_t* tokenizer_data() const;
  uint64_t tokenizer_bytes() const;
  const std::vector<SlmTensor>& tensors() const { return tensors_; }
  const SlmTensor* find(const std::string& name) const;  // nullptr if absent
  const uint8_t* data(const SlmTensor& t) const { return base_ + t.offset; }
  uint64_t file_bytes() const { return size_; }
  // Tells the kernel the tensor's pages will not be read again (a reader that copied it), so
  // they leave resident memory. data(t) stays valid: a later read faults the pages back in.
  void release(const SlmTensor& t) const;

 private:
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::string spec_json_, tokenizer_kind_;
  ModelSpec spec_;
  uint64_t tok_off_ = 0, tok_bytes_ = 0;
  std::vector<SlmTensor> tensors_;
};

// Throws slmc::Error naming the file, the tensor, the flat index and the value if a weight of `t`
// is NaN or Inf (a float that is, or a block's fp16 scale or zero point that is). Reads every
// plain float, or every block's fp16 fields. The exporter never writes such a file; readers
// that compute with the weights (the runtime, load_model) call this on every tensor.
void check_finite(const SlmFile& f, const SlmTensor& t);

// True if `path` is a regular file that starts with kSlmMagic.
bool is_slm_file(const std::string& path);

// Builds a .slm file; write() puts it in place atomically (temp file + rename).
class SlmWriter {
 public:
  void set_spec_json(std::string json) { spec_json_ = std::move(json); }
  // `kind` is one of kSlmTokenizerKinds, or "" (then `bytes` must be empty); checked.
  void set_tokenizer(std::string kind, std::string bytes);
  // `bytes` must be exactly codec::row_bytes(format, cols) * rows (checked).
  void add_tensor(const std::string& name, codec::Format format, std::vector<int64_t> shape,
                  std::vector<uint8_t> bytes);
  // Checks what the reader would (the spec parses, the tensors are exactly the spec's) and
  // writes; throws slmc::Error naming `path` and leaves nothing behind on failure.
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    codec::Format format;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::string spec_json_, tok_kind_, tok_bytes_;
  std::vector<Pending> tensors_;
};

}  // namespace slmc::format
