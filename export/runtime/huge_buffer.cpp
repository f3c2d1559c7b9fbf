#include "export/runtime/huge_buffer.h"

#include <sys/mman.h>

#include <new>
#include <utility>

namespace slmc::runtime {

namespace {
constexpr size_t kHuge = size_t{2} << 20;
}

HugeBuffer::HugeBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // Over-map by one huge page so the start can be aligned to it (mmap gives 4 KiB alignment).
  mapped_ = (bytes + kHuge - 1) / kHuge * kHuge + kHuge;
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  uint8_t* base = static_cast<uint8_t*>(p);
  uint8_t* aligned = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(base) + kHuge - 1) / kHuge * kHuge);
  const size_t head = static_cast<size_t>(aligned - base);
  if (head) ::munmap(base, head);
  mapped_ -= head;
  data_ = aligned;
  ::madvise(data_, mapped_, MADV_HUGEPAGE);  // advisory: 4 KiB pages if refused
}

HugeBuffer::~HugeBuffer() {
  if (data_) ::munmap(data_, mapped_);
}

HugeBuffer::HugeBuffer(HugeBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, mapped_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

}  // namespace slmc::runtime
