// Host tensors: the in-memory currency between loaders, passes and writers. Always fp32 in memory;
// the dtype a tensor had on disk is kept so writers and `inspect` can report it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace slmc {

// Storage dtypes of checkpoint files. Persisted names (safetensors spelling) never change.
enum class DType { kF32, kF16, kBF16, kI32, kI64, kU8 };

const char* dtype_name(DType t);          // "F32", "F16", "BF16", ...
int dtype_size(DType t);                  // bytes per element
bool dtype_from_name(const std::string& name, DType* out);  // false if unknown

struct HostTensor {
  std::vector<int64_t> shape;  // row-major; a Linear weight is (out_features, in_features)
  std::vector<float> data;     // numel() values
  DType source_dtype = DType::kF32;

  int64_t numel() const;
  int64_t dim(int i) const { return shape.at(static_cast<size_t>(i)); }
  std::string shape_str() const;  // "[64, 172]"
};

int64_t shape_numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);

// Canonical tensor name -> tensor. Ordered, so iteration (and files written from it) is deterministic.
using TensorMap = std::map<std::string, HostTensor>;

}  // namespace slmc
