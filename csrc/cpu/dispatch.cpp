// dispatch.cpp — CPU feature detection (CPUID plus XGETBV: the OS must save the wide
// registers too) and the choice of kernel table.
#include "cpu/dispatch.h"

#include <atomic>
#include <cstdlib>

#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FASTNN_X86 1
#endif

namespace fastnn {
namespace cpu::portable { extern const Kernels kernels; }
#ifdef FASTNN_X86
namespace cpu::avx2 { extern const Kernels kernels; }
namespace cpu::avx512 { extern const Kernels kernels; }
#endif

namespace {

struct Path {
  const char* name;
  const Kernels* kernels;
  bool supported;
};

#ifdef FASTNN_X86
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// AVX2 path: AVX2 + FMA, YMM state enabled by the OS.
// AVX-512 path: F, DQ, BW, VL (what its -m flags allow the compiler to use), ZMM state.
void detect(bool& avx2, bool& avx512) {
  avx2 = avx512 = false;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  const bool osxsave = c & bit_OSXSAVE, fma = c & bit_FMA;
  if (!osxsave) return;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6, zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, nullptr) < 7) return;
  __cpuid_count(7, 0, a, b, c, d);
  avx2 = ymm_state && fma && (b & bit_AVX2);
  avx512 = avx2 && zmm_state && (b & bit_AVX512F) && (b & bit_AVX512DQ) &&
           (b & bit_AVX512BW) && (b & bit_AVX512VL);
}
#endif

const std::vector<Path>& paths() {
  static const std::vector<Path> all = [] {
    std::vector<Path> p{{"portable", &cpu::portable::kernels, true}};
#ifdef FASTNN_X86
    bool avx2, avx512;
    detect(avx2, avx512);
    p.push_back({"avx2", &cpu::avx2::kernels, avx2});
    p.push_back({"avx512", &cpu::avx512::kernels, avx512});
#endif
    return p;
  }();
  return all;
}

std::atomic<const Kernels*> current{&cpu::portable::kernels};

}  // namespace

std::vector<std::string> cpu_isa_available() {
  std::vector<std::string> names;
  for (const Path& p : paths()) {
    if (p.supported) names.push_back(p.name);
  }
  return names;
}

const Kernels& cpu_kernels() { return *current.load(); }

void set_cpu_isa(const std::string& name) {
  std::string known, available;
  for (const Path& p : paths()) {
    known += (known.empty() ? "" : ", ") + std::string(p.name);
    if (p.supported) available += (available.empty() ? "" : ", ") + std::string(p.name);
  }
  for (const Path& p : paths()) {
    if (name != p.name) continue;
    if (!p.supported) {
      fail("CPU ISA path '", name, "' is not supported by this CPU (available: ", available, ")");
    }
    current.store(p.kernels);
    return;
  }
  fail("unknown CPU ISA path '", name, "' (expected one of: ", known, ")");
}

void init_cpu_isa_from_env() {
  const char* forced = std::getenv("FASTNN_ISA");
  if (forced != nullptr && *forced != '\0') {
    try {
      set_cpu_isa(forced);
    } catch (const Error& e) {
      fail("FASTNN_ISA=", forced, ": ", e.what());
    }
    return;
  }
  set_cpu_isa(cpu_isa_available().back());
}

}  // namespace fastnn
