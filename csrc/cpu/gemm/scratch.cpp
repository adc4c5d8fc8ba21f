// ISA-independent helpers of the GEMM family: packing scratch and the size
// of a packed B.
#include "cpu/gemm/gemm.h"
#include "runtime/scratch.h"

namespace minidnn::cpu {

float* gemm_scratch(int slot, int64_t floats) {
  return thread_scratch(slot == 0 ? ScratchSlot::gemm_a_block : ScratchSlot::gemm_b_block, floats);
}

int64_t packed_b_floats(const GemmBlocking& blk, int64_t k, int64_t n) {
  const int64_t n_padded = (n + blk.nr - 1) / blk.nr * blk.nr;
  return k * n_padded;
}

int64_t packed_a_floats(const GemmBlocking& blk, int64_t m, int64_t k) {
  return (m + blk.mr - 1) / blk.mr * blk.mr * k;
}

}  // namespace minidnn::cpu
