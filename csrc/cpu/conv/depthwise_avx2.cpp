// Depthwise convolution, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/conv/depthwise_impl.h"

namespace minidnn::cpu {

const DepthwiseKernels& depthwise_kernels_avx2() {
  static const DepthwiseKernels table{depthwise_forward<Avx2Ops>};
  return table;
}

}  // namespace minidnn::cpu
