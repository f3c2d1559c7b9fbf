// Host tensors (fp32 vectors, compress/core/tensor.h) to and from LibTorch, for the passes.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "compress/core/tensor.h"

namespace slmc {

// A fp32 copy of `t` in its shape.
inline torch::Tensor to_torch(const HostTensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
}

// The values of `t` as fp32, row-major.
inline std::vector<float> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// A bool tensor of `shape` from bytes (0 = false), and back.
inline torch::Tensor bool_tensor(const std::vector<int64_t>& shape, const std::vector<uint8_t>& b) {
  return torch::from_blob(const_cast<uint8_t*>(b.data()), shape, torch::kUInt8).to(torch::kBool);
}
inline std::vector<uint8_t> bool_bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kUInt8).contiguous();
  return std::vector<uint8_t>(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
}

}  // namespace slmc
