// Convolution row kernels, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/conv/conv_rows_impl.h"

namespace minidnn::cpu {

const ConvRowKernels& conv_row_kernels_avx2() {
  static const ConvRowKernels table = make_conv_row_kernels<Avx2Ops>();
  return table;
}

}  // namespace minidnn::cpu
