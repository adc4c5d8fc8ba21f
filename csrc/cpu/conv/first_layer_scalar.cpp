// First-layer convolution, scalar variant: compiled for baseline x86-64.
// Tile 4 channels x 4 pixels.
#include "cpu/simd/scalar.h"
#include "cpu/conv/first_layer_impl.h"

namespace minidnn::cpu {

const FirstLayerKernels& first_layer_kernels_scalar() {
  static const FirstLayerKernels table{ScalarOps::W, 4, first_layer_rows<ScalarOps, 4, 4>};
  return table;
}

}  // namespace minidnn::cpu
