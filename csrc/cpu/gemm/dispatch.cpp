// Picks the GEMM table for the active ISA.
#include "cpu/gemm/gemm.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const GemmKernels& gemm_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return gemm_kernels_avx512();
    case Isa::avx2: return gemm_kernels_avx2();
    case Isa::scalar: break;
  }
  return gemm_kernels_scalar();
}

}  // namespace minidnn::cpu
