// Picks the activation family's table for the active ISA.
#include "cpu/activation/activation.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const ActivationKernels& activation_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return activation_kernels_avx512();
    case Isa::avx2: return activation_kernels_avx2();
    case Isa::scalar: break;
  }
  return activation_kernels_scalar();
}

}  // namespace minidnn::cpu
