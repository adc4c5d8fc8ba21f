// softmax / log_softmax along one axis and their backwards on a CUDA device
// (see prelude.cuh for the two compilations). The array is viewed as
// (outer, C, inner) with the softmax over C:
// - inner == 1, C <= kWarpRowMax: a warp per row; each lane keeps an online
//   (max, sum of exp) over its strided share of the row, the lanes merge by
//   butterfly shuffles, and a second pass over the row writes the output;
// - inner == 1, longer rows: a block per row, the same with a block
//   reduction (shuffles, then one warp over the warps' partials in shared
//   memory);
// - inner > 1 (e.g. NCHW channels): a thread per (outer, inner) position
//   walking the C axis with stride `inner`, so neighbouring threads read
//   neighbouring addresses.
// Every reduction runs in a fixed order (no atomics): results do not depend
// on scheduling. Not yet: 16-byte vector loads, the row kept in registers
// between the two passes (the second pass re-reads it, from L2 on a GPU).
#pragma once

#include <cmath>

#include "cuda/kernels/prelude.cuh"

namespace minidnn::cuda::MINIDNN_CUDA_TARGET {

// The longest row a warp takes; longer rows get a block.
constexpr int64_t kWarpRowMax = 1024;
constexpr unsigned kSoftmaxBlock = 256;

// The online (max, sum of exp(x - max)) of a part of a row. As in the
// two-pass formula (and PyTorch), a NaN or a +inf in the row makes the sum
// NaN, and so every output of the row; a row of all -inf has max -inf and
// sum 0, and its outputs are NaN too (exp(-inf - -inf)).
struct MaxSum {
  float max;  // never NaN
  float sum;  // 0 or NaN while max is -inf
};

__device__ __forceinline__ MaxSum take_element(MaxSum s, float x) {
  if (x == -INFINITY) return s;  // adds exp(-inf) = 0
  // x - x: 0 for finite x, NaN for +inf (as exp(inf - inf) in two passes).
  if (x > s.max) return {x, s.sum * expf(s.max - x) + expf(x - x)};
  return {s.max, s.sum + expf(x - s.max)};  // a NaN x makes the sum NaN
}

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, a.sum + b.sum};  // not exp(-inf + inf) = NaN
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

__device__ __forceinline__ MaxSum shuffle_xor(MaxSum v, int offset) {
  return {__shfl_xor_sync(0xffffffffu, v.max, offset), __shfl_xor_sync(0xffffffffu, v.sum, offset)};
}
__device__ __forceinline__ float shuffle_xor(float v, int offset) { return __shfl_xor_sync(0xffffffffu, v, offset); }

// What each op reduces over a row and writes from the result. `a` is x
// (forward) or grad_y (backward); `b` is y (backward only).
template <bool Log>
struct Forward {
  using State = MaxSum;
  static __device__ __forceinline__ State empty() { return {-INFINITY, 0.0f}; }
  static __device__ __forceinline__ State take(State s, const float* a, const float*, int64_t i) {
    return take_element(s, a[i]);
  }
  static __device__ __forceinline__ State combine(State x, State y) { return merge(x, y); }
  // Once per row: sum -> log(sum), or 1 / sum (a multiply per element
  // rather than a division, whose slow-path call spilled registers).
  static __device__ __forceinline__ State finish(State s) {
    return {s.max, Log ? logf(s.sum) : __frcp_rn(s.sum)};
  }
  static __device__ __forceinline__ float out(State s, const float* a, const float*, int64_t i) {
    if constexpr (Log) {
      return (a[i] - s.max) - s.sum;
    } else {
      return expf(a[i] - s.max) * s.sum;
    }
  }
};

template <bool Log>
struct Backward {
  using State = float;  // sum(grad_y * y) for softmax, sum(grad_y) for log_softmax
  static __device__ __forceinline__ State empty() { return 0.0f; }
  static __device__ __forceinline__ State take(State s, const float* g, const float* y, int64_t i) {
    if constexpr (Log) {
      return s + g[i];
    } else {
      return s + g[i] * y[i];
    }
  }
  static __device__ __forceinline__ State combine(State x, State y) { return x + y; }
  static __device__ __forceinline__ State finish(State s) { return s; }
  static __device__ __forceinline__ float out(State s, const float* g, const float* y, int64_t i) {
    if constexpr (Log) {
      return g[i] - expf(y[i]) * s;
    } else {
      return y[i] * (g[i] - s);
    }
  }
};

// The warp's combined state, in every lane (a butterfly: lanes combine
// their values in the same order, so they agree bit for bit).
template <class Op>
__device__ __forceinline__ typename Op::State warp_combine(typename Op::State s) {
  for (int offset = 16; offset > 0; offset /= 2) s = Op::combine(s, shuffle_xor(s, offset));
  return s;
}

template <class Op>
__global__ void __launch_bounds__(kSoftmaxBlock)
    softmax_warp_rows(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                      int64_t rows, int64_t C) {
  const unsigned lane = threadIdx.x % 32;
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t row = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32; row < rows;
       row += int64_t{gridDim.x} * warps_per_block) {
    const float* ra = a + row * C;
    const float* rb = b == nullptr ? nullptr : b + row * C;
    typename Op::State s = Op::empty();
    for (int64_t j = lane; j < C; j += 32) s = Op::take(s, ra, rb, j);
    s = Op::finish(warp_combine<Op>(s));
    for (int64_t j = lane; j < C; j += 32) out[row * C + j] = Op::out(s, ra, rb, j);
  }
}

template <class Op>
__global__ void __launch_bounds__(kSoftmaxBlock)
    softmax_block_rows(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                       int64_t rows, int64_t C) {
  __shared__ typename Op::State partial[32];
  const unsigned lane = threadIdx.x % 32;
  const unsigned warp = threadIdx.x / 32;
  const unsigned warps = blockDim.x / 32;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* ra = a + row * C;
    const float* rb = b == nullptr ? nullptr : b + row * C;
    typename Op::State s = Op::empty();
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) s = Op::take(s, ra, rb, j);
    s = warp_combine<Op>(s);
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
      s = warp_combine<Op>(lane < warps ? partial[lane] : Op::empty());
      if (lane == 0) partial[0] = s;
    }
    __syncthreads();
    s = Op::finish(partial[0]);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) out[row * C + j] = Op::out(s, ra, rb, j);
    // partial[] is written again for the next row only after every thread has read it.
    __syncthreads();
  }
}

template <class Op>
__global__ void __launch_bounds__(kSoftmaxBlock)
    softmax_inner(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out, int64_t outer,
                  int64_t C, int64_t inner) {
  const int64_t positions = outer * inner;
  for (int64_t p = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; p < positions;
       p += int64_t{gridDim.x} * blockDim.x) {
    const int64_t base = p / inner * C * inner + p % inner;
    const float* pa = a + base;
    const float* pb = b == nullptr ? nullptr : b + base;
    typename Op::State s = Op::empty();
    for (int64_t c = 0; c < C; ++c) s = Op::take(s, pa, pb, c * inner);
    s = Op::finish(s);
    for (int64_t c = 0; c < C; ++c) out[base + c * inner] = Op::out(s, pa, pb, c * inner);
  }
}

template <class Op>
void softmax_as(const char* name, const float* a, const float* b, float* out, int64_t outer, int64_t C,
                int64_t inner) {
  if (outer == 0 || C == 0 || inner == 0) return;
  if (inner > 1) {
    launch(name, softmax_inner<Op>, dim3(grid_stride_blocks(outer * inner, kSoftmaxBlock)), dim3(kSoftmaxBlock), 0,
           a, b, out, outer, C, inner);
  } else if (C <= kWarpRowMax) {
    const unsigned grid = grid_stride_blocks(outer * 32, kSoftmaxBlock);
    launch(name, softmax_warp_rows<Op>, dim3(grid), dim3(kSoftmaxBlock), 0, a, b, out, outer, C);
  } else {
    const unsigned grid = grid_stride_blocks(outer, 1);
    launch(name, softmax_block_rows<Op>, dim3(grid), dim3(kSoftmaxBlock), 0, a, b, out, outer, C);
  }
}

// y = (log_)softmax(x) over C of the (outer, C, inner) view.
inline void softmax_forward(bool log, const float* x, float* y, int64_t outer, int64_t C, int64_t inner) {
  if (log) {
    softmax_as<Forward<true>>("log_softmax", x, nullptr, y, outer, C, inner);
  } else {
    softmax_as<Forward<false>>("softmax", x, nullptr, y, outer, C, inner);
  }
}

// grad_x of (log_)softmax from grad_y and y.
inline void softmax_backward(bool log, const float* grad_y, const float* y, float* grad_x, int64_t outer, int64_t C,
                             int64_t inner) {
  if (log) {
    softmax_as<Backward<true>>("log_softmax_backward", grad_y, y, grad_x, outer, C, inner);
  } else {
    softmax_as<Backward<false>>("softmax_backward", grad_y, y, grad_x, outer, C, inner);
  }
}

}  // namespace minidnn::cuda::MINIDNN_CUDA_TARGET
