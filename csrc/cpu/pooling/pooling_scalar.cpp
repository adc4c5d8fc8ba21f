// Pooling, scalar variant: compiled with this ISA's flags only.
#include "cpu/simd/scalar.h"
#include "cpu/pooling/pooling_impl.h"

namespace minidnn::cpu {

const PoolingKernels& pooling_kernels_scalar() {
  static const PoolingKernels table{pool_max_forward<ScalarOps>, pool_avg_forward<ScalarOps>, pool_avg_backward<ScalarOps>,
                                    pool_max_backward<ScalarOps>, pool_max_unpool<ScalarOps>};
  return table;
}

}  // namespace minidnn::cpu
