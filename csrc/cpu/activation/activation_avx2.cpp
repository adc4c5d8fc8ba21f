// Activations, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/activation/activation_impl.h"

namespace minidnn::cpu {

const ActivationKernels& activation_kernels_avx2() {
  static const ActivationKernels table{activation_forward<Avx2Ops>, activation_backward<Avx2Ops>};
  return table;
}

}  // namespace minidnn::cpu
