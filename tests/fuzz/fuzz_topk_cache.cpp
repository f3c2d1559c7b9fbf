// The offline teacher's top-k cache (distill/topk_cache.h), an HDF5 file: the header attributes,
// the dataset shapes, and the first and last window. Debian's libhdf5 is not instrumented (see
// README.md): a crash inside it on a malformed file is reported like one of ours.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "distill/topk_cache.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static slmc::fuzz::MemFile file("fuzz_topk_cache");
  static const int no_locking = ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
  (void)no_locking;
  const std::string& path = file.write(data, size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::distill::TopKCacheReader r(path);
    (void)r.read(0);
    (void)r.read(r.header().n_windows - 1);
  });
  return 0;
}
