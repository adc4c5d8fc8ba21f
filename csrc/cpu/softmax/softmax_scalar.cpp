// Softmax family, scalar variant: compiled with this ISA's flags only.
#include "cpu/simd/scalar.h"
#include "cpu/softmax/softmax_impl.h"

namespace minidnn::cpu {

const SoftmaxKernels& softmax_kernels_scalar() {
  static const SoftmaxKernels table{softmax_forward<ScalarOps>, softmax_backward<ScalarOps>,
                                    cross_entropy_forward<ScalarOps>, cross_entropy_backward<ScalarOps>};
  return table;
}

}  // namespace minidnn::cpu
