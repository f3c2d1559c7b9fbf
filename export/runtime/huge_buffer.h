// Large, zero-initialised buffers backed by 2 MiB pages where the kernel allows
// (MADV_HUGEPAGE: this machine's transparent huge pages are "madvise"). Streaming a model's
// weights through 4 KiB pages costs a TLB miss every 64 cache lines.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slmc::runtime {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(size_t bytes);
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& o) noexcept;
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0, mapped_ = 0;
};

}  // namespace slmc::runtime
