// Run-time instruction set detection. An ISA counts only when the CPU reports it (cpuid) AND the
// OS saves the register state it needs (xgetbv): a kernel that touches ZMM registers the OS does
// not save would corrupt other threads' state or fault. AMX tile data additionally needs the
// process's permission on Linux (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), asked for
// once here; without it the first tile instruction faults, so kAmx needs the request to succeed.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "export/runtime/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SLMC_X86 1
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define SLMC_AMX 1
#endif

namespace slmc::runtime {

namespace {

#if SLMC_X86
uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

Isa detect() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::kScalar;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!(osxsave && avx && fma && f16c)) return Isa::kScalar;
  const uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return Isa::kScalar;  // XMM and YMM state
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::kScalar;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  if (!avx2) return Isa::kScalar;
  const bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31), vnni = c & (1u << 11);
  const bool zmm_state = (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM0-15 upper halves, ZMM16-31
  if (!(f && bw && vl && vnni && zmm_state)) return Isa::kAvx2;
#if SLMC_AMX
  const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
  const bool tile_state = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG, XTILEDATA
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  // The permission is per process and sticky: granted once, every thread may use the tiles.
  if (amx_tile && amx_int8 && tile_state &&
      syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0)
    return Isa::kAmx;
#endif
  return Isa::kAvx512;
}
#else
Isa detect() { return Isa::kScalar; }
#endif

Isa lowered_by_env(Isa hw) {
  const char* env = std::getenv("SLMC_ISA");
  if (env == nullptr || *env == '\0') return hw;
  Isa wanted;
  if (!isa_from_name(env, &wanted)) return hw;  // unknown value: ignore rather than guess
  return static_cast<int>(wanted) < static_cast<int>(hw) ? wanted : hw;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAmx:
      return "amx";
  }
  return "unknown";
}

bool isa_from_name(const char* name, Isa* out) {
  if (name == nullptr) return false;
  char lower[16] = {};
  size_t i = 0;
  for (; name[i] != '\0'; ++i) {
    if (i + 1 >= sizeof(lower)) return false;
    lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAmx})
    if (std::strcmp(lower, isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  return false;
}

Isa vector_isa(Isa isa) { return isa == Isa::kAmx ? Isa::kAvx512 : isa; }

Isa hardware_isa() {
  static const Isa hw = detect();
  return hw;
}

Isa best_isa() {
  static const Isa best = lowered_by_env(hardware_isa());
  return best;
}

}  // namespace slmc::runtime
