// Non-x86 builds: no SIMD units, the dispatcher falls back to the scalar kernels.
#include "export/runtime/kernels_internal.h"

namespace slmc::runtime::internal {
const IsaKernels* avx2_kernels() { return nullptr; }
const IsaKernels* avx512_kernels() { return nullptr; }
}  // namespace slmc::runtime::internal
