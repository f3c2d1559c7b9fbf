// The GGUF container (llama.cpp's model file, version 3): a validating mmap reader and a writer.
// Torch-free: part of the deployable runtime (std, slmc_core, slmc_codec).
//
//   uint32 magic "GGUF", uint32 version (3), uint64 n_tensors, uint64 n_kv
//   n_kv times:      string key, uint32 value type, value
//   n_tensors times: string name, uint32 n_dims, uint64 ne[n_dims] (ne[0] = the row width),
//                    uint32 ggml type, uint64 offset (from the data section, a multiple of the
//                    alignment)
//   zero padding to `general.alignment` (default 32), then the data section
// string = uint64 length + bytes (no NUL); array = uint32 element type + uint64 count + elements;
// everything little-endian (gguf-py/gguf/constants.py, ggml/src/gguf.cpp).
//
// The reader checks every count, length, offset and size against the file size before it reads
// or allocates: a truncated file, an unknown value or tensor type id, a string or array longer than
// the file, duplicate keys or tensor names, a tensor whose row width its type's block cannot
// divide (naming the tensor and the block size), a tensor whose offset or size runs past the file,
// misaligned or overlapping tensors. Errors name the file and the field.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quantize/codec/formats.h"

namespace slmc {
class MappedFile;
}

namespace slmc::format {

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint64_t kGgufDefaultAlign = 32;
inline constexpr uint32_t kGgufMaxDims = 4;  // GGML_MAX_DIMS

// GGUF metadata value types (gguf-py GGUFValueType).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars: integers in `i` (every integer type; uint64 beyond int64 is
// refused), floats in `f`, bools in `i` (0/1), strings in `s`. Arrays: `elem` and the matching
// vector (`ints`, `floats` or `strs`; arrays of arrays are refused).
struct GgufValue {
  GgufType type = GgufType::kUint32;
  GgufType elem = GgufType::kUint32;  // arrays only
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strs;

  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue int_array(GgufType elem, std::vector<int64_t> v);
  static GgufValue float_array(std::vector<double> v);  // float32 elements
  static GgufValue str_array(std::vector<std::string> v);
  uint64_t count() const;  // array length (1 for a scalar)
};

// The ggml types a GGUF tensor may have here (the codec formats ggml also has, by ggml id).
// false for ids ggml does not define or that slmc cannot decode.
bool gguf_format_from_type(uint32_t ggml_type, codec::Format* out);
bool gguf_type_supported(codec::Format f);  // formats with a ggml id (not q4_g64 / q4_g128)

struct GgufTensor {
  std::string name;
  codec::Format format = codec::Format::kF32;
  std::vector<int64_t> shape;  // row-major: shape.back() = ne[0], the row width
  uint64_t offset = 0;         // absolute file offset
  uint64_t n_bytes = 0;
};

// A validated, memory-mapped GGUF file.
class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // throws slmc::Error naming the file and field
  // Parses bytes already in memory (the fuzz harness); `origin` names them in errors. The bytes
  // must outlive the object.
  GgufFile(const uint8_t* data, uint64_t size, const std::string& origin);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return align_; }
  const std::map<std::string, GgufValue>& kv() const { return kv_; }
  const GgufValue* find_kv(const std::string& key) const;  // nullptr if absent
  // Typed lookups that throw naming the file and key when absent (required) or of another type.
  std::string get_str(const std::string& key) const;
  int64_t get_int(const std::string& key) const;  // any integer type
  double get_float(const std::string& key) const;  // float32/64 (or an integer)
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(const std::string& name) const;
  const uint8_t* data(const GgufTensor& t) const { return base_ + t.offset; }
  uint64_t file_bytes() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }

 private:
  void parse();
  std::unique_ptr<MappedFile> map_;
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t align_ = kGgufDefaultAlign;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> by_name_;
};

// True if `path` is a regular file that starts with the GGUF magic.
bool is_gguf_file(const std::string& path);

// Builds a GGUF v3 file; write() puts it in place atomically (temp file + rename). Keys and
// tensors are written in the order added; tensors at offsets aligned to kGgufDefaultAlign.
class GgufWriter {
 public:
  void add_kv(const std::string& key, GgufValue v);  // a key added twice is an error
  // `shape` row-major (shape.back() is the row width); `bytes` must be exactly
  // codec::row_bytes(format, shape.back()) * (product of the other dims) (checked), and `format`
  // must have a ggml type id.
  void add_tensor(const std::string& name, codec::Format format, std::vector<int64_t> shape,
                  std::vector<uint8_t> bytes);
  // Throws slmc::Error naming `path` and leaves nothing behind on failure.
  void write(const std::string& path) const;
  uint64_t file_bytes() const;  // the size write() will produce

 private:
  struct Pending {
    std::string name;
    codec::Format format;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Pending> tensors_;
  std::string header() const;  // everything before the data section, padding included
};

}  // namespace slmc::format
