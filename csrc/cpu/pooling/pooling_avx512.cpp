// Pooling, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/pooling/pooling_impl.h"

namespace minidnn::cpu {

const PoolingKernels& pooling_kernels_avx512() {
  static const PoolingKernels table{pool_max_forward<Avx512Ops>, pool_avg_forward<Avx512Ops>, pool_avg_backward<Avx512Ops>,
                                    pool_max_backward<Avx512Ops>, pool_max_unpool<Avx512Ops>};
  return table;
}

}  // namespace minidnn::cpu
