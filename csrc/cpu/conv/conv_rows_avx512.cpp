// Convolution row kernels, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/conv/conv_rows_impl.h"

namespace minidnn::cpu {

const ConvRowKernels& conv_row_kernels_avx512() {
  static const ConvRowKernels table = make_conv_row_kernels<Avx512Ops>();
  return table;
}

}  // namespace minidnn::cpu
