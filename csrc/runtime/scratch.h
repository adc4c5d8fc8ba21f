// Per-thread scratch buffers for the kernels, 64-byte aligned, grown on
// demand and kept, so that repeated calls allocate nothing.
#pragma once

#include <cstdint>

namespace minidnn {

// Who uses which buffer: two users of one slot must never be live at once
// on a thread.
enum class ScratchSlot {
  gemm_a_block = 0,  // the GEMM's packed A block, shared by a team
  gemm_b_block = 1,  // the GEMM's packed B blocks of each thread
  softmax_row = 2,   // the softmax family's row slice (exp values)
  pooling_row = 3,   // the pooling backward's row of window sums
};

// `floats` floats for `slot` on the calling thread. Valid until the next
// call with the same slot on the same thread; freed at thread exit (OpenMP's
// pool threads live as long as the process). Throws std::bad_alloc.
float* thread_scratch(ScratchSlot slot, int64_t floats);

}  // namespace minidnn
