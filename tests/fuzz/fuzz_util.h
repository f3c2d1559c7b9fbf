// Shared by the libFuzzer harnesses (tests/fuzz/README.md): readers that take a path get the
// input through an in-memory file, and the contract every harness asserts.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "compress/core/error.h"

namespace slmc::fuzz {

// An anonymous in-memory file holding `data`, opened by path as /proc/self/fd/N (no disk, no
// cleanup). One per harness, rewritten for every input.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(::memfd_create(name, MFD_CLOEXEC)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  const std::string& write(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) {
      std::perror("memfd write");
      std::abort();
    }
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// A named file on a RAM disk (/dev/shm, else the temp directory), for readers that need a real
// path (HDF5 resolves the file's real path, which a memfd has not), removed at exit.
class TempFile {
 public:
  explicit TempFile(const char* name) {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = std::string(dir) + "/" + name + "_" + std::to_string(::getpid());
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& write(const uint8_t* data, size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (f == nullptr || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) {
      std::perror(path_.c_str());
      std::abort();
    }
    return path_;
  }

 private:
  std::string path_;
};

// The contract: bad input throws slmc::Error with one line of bounded length; anything else
// escaping (std::bad_alloc, length_error, a yaml-cpp or nlohmann exception) is a finding.
inline void check_message(const Error& e) {
  const std::string m = e.what();
  if (m.empty() || m.find('\n') != std::string::npos || m.size() > 4096) {
    std::fprintf(stderr, "bad error message (%zu bytes): %.300s\n", m.size(), m.c_str());
    std::abort();
  }
}

template <typename F>
void expect_ok_or_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    check_message(e);
  }
}

}  // namespace slmc::fuzz
