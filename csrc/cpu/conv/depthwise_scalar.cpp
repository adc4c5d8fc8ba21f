// Depthwise convolution, scalar variant: compiled for baseline x86-64.
#include "cpu/simd/scalar.h"
#include "cpu/conv/depthwise_impl.h"

namespace {

struct DepthwiseScalarOps : ScalarOps {
  static V load_even(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
};

}  // namespace

namespace minidnn::cpu {

const DepthwiseKernels& depthwise_kernels_scalar() {
  static const DepthwiseKernels table{depthwise_forward<DepthwiseScalarOps>};
  return table;
}

}  // namespace minidnn::cpu
