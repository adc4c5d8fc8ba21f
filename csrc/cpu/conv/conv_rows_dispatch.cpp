// Picks the convolution row kernels for the active ISA.
#include "cpu/conv/conv_rows.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const ConvRowKernels& conv_row_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return conv_row_kernels_avx512();
    case Isa::avx2: return conv_row_kernels_avx2();
    case Isa::scalar: break;
  }
  return conv_row_kernels_scalar();
}

}  // namespace minidnn::cpu
