// Softmax family, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/softmax/softmax_impl.h"

namespace minidnn::cpu {

const SoftmaxKernels& softmax_kernels_avx512() {
  static const SoftmaxKernels table{softmax_forward<Avx512Ops>, softmax_backward<Avx512Ops>,
                                    cross_entropy_forward<Avx512Ops>, cross_entropy_backward<Avx512Ops>};
  return table;
}

}  // namespace minidnn::cpu
