// Softmax family, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/softmax/softmax_impl.h"

namespace minidnn::cpu {

const SoftmaxKernels& softmax_kernels_avx2() {
  static const SoftmaxKernels table{softmax_forward<Avx2Ops>, softmax_backward<Avx2Ops>,
                                    cross_entropy_forward<Avx2Ops>, cross_entropy_backward<Avx2Ops>};
  return table;
}

}  // namespace minidnn::cpu
