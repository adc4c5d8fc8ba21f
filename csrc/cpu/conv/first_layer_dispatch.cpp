// Picks the first-layer convolution's table for the active ISA.
#include "cpu/conv/first_layer.h"
#include "runtime/cpu_features.h"

namespace minidnn::cpu {

const FirstLayerKernels& first_layer_kernels() {
  switch (active_isa()) {
    case Isa::avx512: return first_layer_kernels_avx512();
    case Isa::avx2: return first_layer_kernels_avx2();
    case Isa::scalar: break;
  }
  return first_layer_kernels_scalar();
}

}  // namespace minidnn::cpu
