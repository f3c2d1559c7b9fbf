// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}),
// then the data; offsets are relative to the byte after the header. Read through mmap; every
// length and offset is checked against the file size before any data is touched.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compress/core/tensor.h"

namespace slmc {

struct SafetensorsEntry {
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // relative to the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // mmaps and validates `path`: header length within the file, JSON well formed, known dtypes,
  // shape x dtype size == end - begin, offsets inside the data section and not overlapping.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }

  // The tensor converted to fp32 (F32, F16 and BF16; other dtypes are an error naming it).
  HostTensor read(const std::string& name) const;
  // Raw bytes of a tensor (points into the mapping).
  const uint8_t* raw(const std::string& name) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` in map order as `dtype` (F32, F16 or BF16), atomically; the header is padded
// with spaces so the data section starts 8-byte aligned.
void write_safetensors(const std::string& path, const TensorMap& tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata = {});

// The same, for tensors held elsewhere (e.g. renamed without copying); written in vector order.
struct NamedTensor {
  std::string name;
  const HostTensor* tensor;
};
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       DType dtype, const std::map<std::string, std::string>& metadata = {});

}  // namespace slmc
