// Activations, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/activation/activation_impl.h"

namespace minidnn::cpu {

const ActivationKernels& activation_kernels_avx512() {
  static const ActivationKernels table{activation_forward<Avx512Ops>, activation_backward<Avx512Ops>};
  return table;
}

}  // namespace minidnn::cpu
