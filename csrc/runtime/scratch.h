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
  conv_columns = 3,  // convolution's im2col tile around a gemm() call (which uses both GEMM slots)
  recurrent_gates = 4,  // a recurrent cell's or layer's buffers (gates, packed W_hh) around its gemm() calls
  pooling_row = 5,       // pooling's row buffer (average forward's column sums, backward's window sums)
};

// `floats` floats for `slot` on the calling thread. Valid until the next
// call with the same slot on the same thread; freed at thread exit (OpenMP's
// pool threads live as long as the process). Throws std::bad_alloc.
float* thread_scratch(ScratchSlot slot, int64_t floats);

// The extra memory kernels asked for since the last reset_scratch_peak():
// over every thread, the largest request of each slot, summed, in bytes
// (the benchmark's "peak extra memory"; buffers already held count only as
// far as they were asked for).
void reset_scratch_peak();
int64_t scratch_peak_bytes();

}  // namespace minidnn
