// Picks the recurrent family's table for the active ISA.
#include "cpu/recurrent/recurrent.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const RecurrentKernels& recurrent_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return recurrent_kernels_avx512();
    case Isa::avx2: return recurrent_kernels_avx2();
    case Isa::scalar: break;
  }
  return recurrent_kernels_scalar();
}

}  // namespace minidnn::cpu
