// Depthwise convolution, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/conv/depthwise_impl.h"

namespace minidnn::cpu {

const DepthwiseKernels& depthwise_kernels_avx512() {
  static const DepthwiseKernels table{depthwise_forward<Avx512Ops>};
  return table;
}

}  // namespace minidnn::cpu
