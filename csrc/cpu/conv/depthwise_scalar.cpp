// Depthwise convolution, scalar variant: compiled for baseline x86-64.
#include "cpu/simd/scalar.h"
#include "cpu/conv/depthwise_impl.h"

namespace minidnn::cpu {

const DepthwiseKernels& depthwise_kernels_scalar() {
  static const DepthwiseKernels table{depthwise_forward<ScalarOps>};
  return table;
}

}  // namespace minidnn::cpu
