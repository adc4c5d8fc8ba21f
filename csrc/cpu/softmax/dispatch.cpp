// Picks the softmax family's table for the active ISA.
#include "cpu/softmax/softmax.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const SoftmaxKernels& softmax_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return softmax_kernels_avx512();
    case Isa::avx2: return softmax_kernels_avx2();
    case Isa::scalar: break;
  }
  return softmax_kernels_scalar();
}

}  // namespace minidnn::cpu
