// Picks the pooling family's table for the active ISA.
#include "cpu/pooling/pooling.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const PoolingKernels& pooling_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return pooling_kernels_avx512();
    case Isa::avx2: return pooling_kernels_avx2();
    case Isa::scalar: break;
  }
  return pooling_kernels_scalar();
}

}  // namespace minidnn::cpu
