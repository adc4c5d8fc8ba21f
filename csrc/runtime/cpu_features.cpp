#include "runtime/cpu_features.h"

#include <cpuid.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

namespace minidnn {
namespace {

uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  // xgetbv is only legal once the OS has set OSXSAVE; callers check first.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

struct CpuFlags {
  bool avx2 = false;
  bool avx512 = false;
};

CpuFlags detect() {
  CpuFlags flags;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return flags;
  const bool fma = ecx & (1u << 12);
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  if (!osxsave || !avx) return flags;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return flags;
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16);
  const bool avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const bool avx512vl = ebx & (1u << 31);
  flags.avx2 = ymm_state && avx2 && fma;
  flags.avx512 = flags.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  return flags;
}

const CpuFlags& cpu_flags() {
  static const CpuFlags flags = detect();
  return flags;
}

bool parse_isa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

std::string g_warning;

Isa initial_isa() {
  const char* env = std::getenv("MINIDNN_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  const std::string requested(env);
  Isa isa;
  if (!parse_isa(requested, &isa)) {
    g_warning = "MINIDNN_ISA='" + requested + "' is not one of avx512, avx2, scalar; using " +
                isa_name(best_isa());
    return best_isa();
  }
  if (!cpu_supports(isa)) {
    g_warning = "MINIDNN_ISA=" + requested + " but this CPU lacks it; using " + isa_name(best_isa());
    return best_isa();
  }
  return isa;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::scalar: return "scalar";
  }
  return "scalar";
}

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::avx512: return cpu_flags().avx512;
    case Isa::avx2: return cpu_flags().avx2;
    case Isa::scalar: return true;
  }
  return false;
}

Isa best_isa() {
  if (cpu_supports(Isa::avx512)) return Isa::avx512;
  if (cpu_supports(Isa::avx2)) return Isa::avx2;
  return Isa::scalar;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_active_isa(const std::string& name) {
  Isa isa;
  if (!parse_isa(name, &isa)) {
    throw std::invalid_argument("isa: expected one of 'avx512', 'avx2', 'scalar', got '" + name + "'");
  }
  if (!cpu_supports(isa)) {
    throw std::invalid_argument("isa: this CPU does not support '" + name + "'");
  }
  active().store(isa, std::memory_order_relaxed);
}

const std::string& isa_selection_warning() {
  active();
  return g_warning;
}

}  // namespace minidnn
