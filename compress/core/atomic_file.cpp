#include "compress/core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "compress/core/error.h"

namespace slmc {

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail(path, ": cannot write: ", std::strerror(err));
  }
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    SLMC_CHECK(f.good(), path, ": cannot open for writing: ", std::strerror(errno));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    SLMC_CHECK(f.good(), path, ": write failed: ", std::strerror(errno));
  });
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SLMC_CHECK(f.good(), path, ": cannot open: ", std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  SLMC_CHECK(!f.bad(), path, ": read failed");
  return ss.str();
}

}  // namespace slmc
