#include "compress/cli/omp_env.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace slmc::cli {

namespace {

// The subcommand: the first argument that is not a global flag (--threads N, -q, --quiet).
const char* subcommand(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--threads") == 0) {
      ++i;
      continue;
    }
    if (std::strncmp(a, "--threads=", 10) == 0 || std::strcmp(a, "-q") == 0 ||
        std::strcmp(a, "--quiet") == 0)
      continue;
    return a;
  }
  return "";
}

}  // namespace

void ensure_omp_wait_policy(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  const char* sub = subcommand(argc, argv);
  if (std::strcmp(sub, "train") != 0 && std::strcmp(sub, "distill") != 0 &&
      std::strcmp(sub, "demo") != 0)
    return;
  if (::setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  // exec failed (no /proc): carry on with libgomp's default policy.
}

}  // namespace slmc::cli
