// HDF5 token files (dataset `tokens`, attributes `tokenizer`, `bos_id`) and logit files (`logits`,
// `tokens`, `vocab`), read through the HDF5 C library. Debian's libhdf5 is not instrumented, so
// the fuzzer sees coverage of slmc's reader only, and a crash inside libhdf5 on a malformed file
// is reported like ours; run_fuzzers.sh tells the two apart (tests/fuzz/README.md says what was
// found).
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "compress/io/h5.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static slmc::fuzz::TempFile file("slmc_fuzz_h5");
  static const int no_locking = ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
  (void)no_locking;
  const std::string& path = file.write(data, size);
  if (!slmc::is_hdf5_file(path)) return 0;
  slmc::fuzz::expect_ok_or_error([&] { (void)slmc::read_tokens_h5(path); });
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::LogitReader r(path);
    const int64_t n = std::min<int64_t>(r.n_positions(), 4);
    if (n <= 0 || r.vocab() > (int64_t{1} << 16)) return;
    std::vector<float> logits(static_cast<size_t>(n * r.vocab()));
    std::vector<int32_t> targets(static_cast<size_t>(n));
    r.read(0, n, logits.data(), targets.data());
  });
  // libhdf5 keeps state between files (free lists, caches); slmc reads one or two files per
  // process. Closing the library makes every input start afresh, so a finding replays alone.
  H5close();
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  return 0;
}
