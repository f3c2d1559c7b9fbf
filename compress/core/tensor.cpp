#include "compress/core/tensor.h"

#include <sstream>

namespace slmc {

namespace {
struct DTypeRow {
  DType type;
  const char* name;
  int size;
};
// One table for every dtype fact.
constexpr DTypeRow kDTypes[] = {
    {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kI32, "I32", 4}, {DType::kI64, "I64", 8}, {DType::kU8, "U8", 1},
};
const DTypeRow& row(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r;
  return kDTypes[0];
}
}  // namespace

const char* dtype_name(DType t) { return row(t).name; }
int dtype_size(DType t) { return row(t).size; }
bool dtype_from_name(const std::string& name, DType* out) {
  for (const auto& r : kDTypes)
    if (name == r.name) {
      *out = r.type;
      return true;
    }
  return false;
}

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

int64_t HostTensor::numel() const { return shape_numel(shape); }
std::string HostTensor::shape_str() const { return slmc::shape_str(shape); }

}  // namespace slmc
