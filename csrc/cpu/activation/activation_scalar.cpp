// Activations, scalar variant: compiled with this ISA's flags only.
#include "cpu/simd/scalar.h"
#include "cpu/activation/activation_impl.h"

namespace minidnn::cpu {

const ActivationKernels& activation_kernels_scalar() {
  static const ActivationKernels table{activation_forward<ScalarOps>, activation_backward<ScalarOps>};
  return table;
}

}  // namespace minidnn::cpu
