// First-layer convolution, avx2 variant: compiled with this ISA's flags
// only. Tile 6 channels x 2 vectors (16 pixels): 12 of the 16 registers
// accumulate, 2 hold the input, 1 the broadcast weight.
#include "cpu/simd/avx2.h"
#include "cpu/conv/first_layer_impl.h"

namespace minidnn::cpu {

const FirstLayerKernels& first_layer_kernels_avx2() {
  static const FirstLayerKernels table{Avx2Ops::W, 6, first_layer_rows<Avx2Ops, 6, 2>};
  return table;
}

}  // namespace minidnn::cpu
