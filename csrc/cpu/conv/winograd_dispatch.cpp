// Picks the Winograd transforms for the active ISA.
#include "cpu/conv/winograd.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms() {
  switch (active_isa()) {
    case Isa::avx512: return winograd_transforms_avx512();
    case Isa::avx2: return winograd_transforms_avx2();
    case Isa::scalar: break;
  }
  return winograd_transforms_scalar();
}

}  // namespace minidnn::cpu
