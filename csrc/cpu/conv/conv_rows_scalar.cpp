// Convolution row kernels, scalar variant: compiled with this ISA's flags only.
#include "cpu/simd/scalar.h"
#include "cpu/conv/conv_rows_impl.h"

namespace minidnn::cpu {

const ConvRowKernels& conv_row_kernels_scalar() {
  static const ConvRowKernels table = make_conv_row_kernels<ScalarOps>();
  return table;
}

}  // namespace minidnn::cpu
