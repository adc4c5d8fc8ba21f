// Pooling, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/pooling/pooling_impl.h"

namespace minidnn::cpu {

const PoolingKernels& pooling_kernels_avx2() {
  static const PoolingKernels table{pool_max_forward<Avx2Ops>, pool_avg_forward<Avx2Ops>, pool_avg_backward<Avx2Ops>,
                                    pool_max_backward<Avx2Ops>, pool_max_unpool<Avx2Ops>};
  return table;
}

}  // namespace minidnn::cpu
