// Picks the depthwise convolution's table for the active ISA.
#include "cpu/conv/depthwise.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

bool is_depthwise(const ConvGeometry& g) { return g.c >= 1 && g.groups == g.c && g.k % g.c == 0; }

const DepthwiseKernels& depthwise_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return depthwise_kernels_avx512();
    case Isa::avx2: return depthwise_kernels_avx2();
    case Isa::scalar: break;
  }
  return depthwise_kernels_scalar();
}

}  // namespace minidnn::cpu
