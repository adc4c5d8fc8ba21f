// First-layer convolution, avx512 variant: compiled with this ISA's flags
// only. Tile 8 channels x 3 vectors (48 pixels): 24 of the 32 registers
// accumulate, 3 hold the input, 1 the broadcast weight.
#include "cpu/simd/avx512.h"
#include "cpu/conv/first_layer_impl.h"

namespace minidnn::cpu {

const FirstLayerKernels& first_layer_kernels_avx512() {
  static const FirstLayerKernels table{Avx512Ops::W, 8, first_layer_rows<Avx512Ops, 8, 3>};
  return table;
}

}  // namespace minidnn::cpu
