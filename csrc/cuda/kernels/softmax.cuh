// softmax / log_softmax along one axis and their backwards on a CUDA device
// (see prelude.cuh for the two compilations). The array is viewed as
// (outer, C, inner) with the softmax over C.
// Forward, inner == 1 (rows), each variant reading a row in 16-byte packs
// of 4 floats (float4 loads and stores where C % 4 == 0 and both arrays
// are 16-byte aligned, else 4 scalar accesses) with every pack of a thread
// loaded before any is used (many loads in flight: the rows are streamed
// from memory, and one load at a time left a GPU latency-bound):
// - C <= kWarpRowMax (1024): a warp per row, the row kept in registers
//   (up to 8 packs a lane), so x is read once;
// - C <= kBlockRowMax (32768): a block of 1024 threads per row, the row in
//   registers likewise (up to 8 packs a thread);
// - longer rows: each row split into `parts` of whole tiles
//   (kSplitTile elements), a function of the shape only
//   (softmax_split_parts): one kernel writes each part's (max, sum) into a
//   workspace, a second combines a row's parts in a fixed order in every
//   block of the row and writes the part's outputs (x is read twice). The
//   split gives few long rows enough blocks to fill the device (64 rows of
//   262144 took one block a row, on 64 of an H100's 132 multiprocessors).
// The backward (two arrays a row), inner == 1: a warp per row up to
// kWarpRowMax, a block of 1024 threads per row beyond; the same packs,
// kBackwardPacks of each array a thread at once, in two passes (the sum,
// combined by butterfly shuffles and a block reduction, then the output,
// re-reading the row from L1 / L2).
// inner > 1 (e.g. NCHW channels), both directions: a thread per
// (outer, inner) position walking the C axis with stride `inner`, so
// neighbouring threads read neighbouring addresses.
// Every reduction runs in a fixed order (no atomics), and the variant and
// the split depend on the shape only: results do not depend on scheduling
// or on the device's multiprocessor count.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cuda/kernels/prelude.cuh"

namespace minidnn::cuda::MINIDNN_CUDA_TARGET {

// Floats of a 16-byte pack (a float4).
constexpr int kPack = 4;
// The most packs a thread keeps in registers (32 floats: at most 64
// registers a thread, the 50% occupancy CI asks for at 1024 threads).
constexpr int kMaxRegisterPacks = 8;
constexpr unsigned kSoftmaxBlock = 256;
// Threads of a forward block row.
constexpr unsigned kBlockRowThreads = 1024;
// The longest row a warp takes (in registers in the forward); longer rows
// get a block.
constexpr int64_t kWarpRowMax = 32 * kPack * kMaxRegisterPacks;
// The longest row a forward block keeps in registers; longer rows are split.
constexpr int64_t kBlockRowMax = int64_t{kBlockRowThreads} * kPack * kMaxRegisterPacks;
// A split row's tile: each of a block's kSoftmaxBlock threads loads
// kSplitPacks packs at once.
constexpr int kSplitPacks = 4;
constexpr int64_t kSplitTile = int64_t{kSoftmaxBlock} * kSplitPacks * kPack;
// The blocks a split aims at: about 8 resident blocks of kSoftmaxBlock
// threads on each of an H100's 132 multiprocessors (a constant, not the
// device's count, so that the split and thus the bits are the same on
// every device).
constexpr int64_t kSplitBlocks = 1024;

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
  static __device__ __forceinline__ float out_value(State s, float x) {
    if constexpr (Log) {
      return (x - s.max) - s.sum;
    } else {
      return expf(x - s.max) * s.sum;
    }
  }
  static __device__ __forceinline__ float out(State s, const float* a, const float*, int64_t i) {
    return out_value(s, a[i]);
  }
};

template <bool Log>
struct Backward {
  using State = float;  // sum(grad_y * y) for softmax, sum(grad_y) for log_softmax
  static __device__ __forceinline__ State empty() { return 0.0f; }
  static __device__ __forceinline__ State take_value(State s, float g, float y) {
    if constexpr (Log) {
      return s + g;
    } else {
      return s + g * y;
    }
  }
  static __device__ __forceinline__ State take(State s, const float* g, const float* y, int64_t i) {
    return take_value(s, g[i], y[i]);
  }
  static __device__ __forceinline__ State combine(State x, State y) { return x + y; }
  static __device__ __forceinline__ State finish(State s) { return s; }
  static __device__ __forceinline__ float out_value(State s, float g, float y) {
    if constexpr (Log) {
      return g - expf(y) * s;
    } else {
      return y * (g - s);
    }
  }
  static __device__ __forceinline__ float out(State s, const float* g, const float* y, int64_t i) {
    return out_value(s, g[i], y[i]);
  }
};

// The warp's combined state, in every lane (a butterfly: lanes combine
// their values in the same order, so they agree bit for bit).
template <class Op>
__device__ __forceinline__ typename Op::State warp_combine(typename Op::State s) {
  for (int offset = 16; offset > 0; offset /= 2) s = Op::combine(s, shuffle_xor(s, offset));
  return s;
}

// The combined state of a block, in every thread. `partial` holds a state
// per warp in shared memory; every thread folds them in the same order, so
// all agree bit for bit.
template <class Op>
__device__ __forceinline__ typename Op::State block_combine(typename Op::State s, typename Op::State* partial) {
  s = warp_combine<Op>(s);
  __syncthreads();  // every thread has read the previous row's partials
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = s;
  __syncthreads();
  s = partial[0];
  for (unsigned w = 1; w < blockDim.x / 32; ++w) s = Op::combine(s, partial[w]);
  return s;
}

// How a row is shared: by a warp (rank = lane) or a block (rank = thread).
struct WarpRow {
  static __device__ __forceinline__ unsigned rank() { return threadIdx.x % 32; }
  static __device__ __forceinline__ unsigned size() { return 32; }
  template <class Op>
  static __device__ __forceinline__ typename Op::State combine(typename Op::State s, typename Op::State*) {
    return warp_combine<Op>(s);
  }
};
struct BlockRow {
  static __device__ __forceinline__ unsigned rank() { return threadIdx.x; }
  static __device__ __forceinline__ unsigned size() { return blockDim.x; }
  template <class Op>
  static __device__ __forceinline__ typename Op::State combine(typename Op::State s, typename Op::State* partial) {
    return block_combine<Op>(s, partial);
  }
};

// ---------------------------------------------------------------------------
// forward over rows (inner == 1)
// ---------------------------------------------------------------------------

// The pack of a row at element e (a multiple of kPack): one float4 load
// when kVec (C % 4 == 0 then, so a pack is all in the row or all past it),
// else scalar loads; `pad` past the row's end, a value that adds nothing
// to the row's reduction (-inf to a sum of exp, 0 to a sum of products)
// and is never stored.
// Index: int in the register-row kernels (C <= kBlockRowMax; 64-bit
// offsets and bounds took the scalar 8-pack variants past 64 registers),
// int64_t in the split ones.
template <bool kVec, class Index>
__device__ __forceinline__ void load_pack(const float* __restrict__ r, Index e, Index C, float pad, float* v) {
  if constexpr (kVec) {
    if (e < C) {
      const float4 p = *reinterpret_cast<const float4*>(r + e);
      v[0] = p.x;
      v[1] = p.y;
      v[2] = p.z;
      v[3] = p.w;
      return;
    }
#pragma unroll
    for (int i = 0; i < kPack; ++i) v[i] = pad;
  } else {
#pragma unroll
    for (int i = 0; i < kPack; ++i) v[i] = e + i < C ? r[e + i] : pad;
  }
}

template <bool kVec, class Index>
__device__ __forceinline__ void store_pack(float* __restrict__ r, Index e, Index C, const float* v) {
  if constexpr (kVec) {
    if (e < C) *reinterpret_cast<float4*>(r + e) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int i = 0; i < kPack; ++i) {
      if (e + i < C) r[e + i] = v[i];
    }
  }
}

// (max, sum of exp(v - max)) of N values in registers, in two passes, with
// take_element's special values: a NaN or a +inf makes the sum NaN
// (exp(inf - inf)); when the max is -inf (all -inf, or NaN among them) the
// sum is taken against 0: 0 for -inf, NaN for a NaN.
template <int N>
__device__ __forceinline__ MaxSum values_max_sum(const float* v) {
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < N; ++i) m = fmaxf(m, v[i]);  // skips NaN: the max is never NaN
  const float shift = m == -INFINITY ? 0.0f : m;
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < N; ++i) s += expf(v[i] - shift);
  return {m, s};
}

// The forward of one row held in registers: thread `rank` of the row's
// kThreads threads takes packs rank, rank + kThreads, ... (neighbouring
// threads read neighbouring 16 bytes), all loaded before any is used.
// kThreads is the launch's constant rather than blockDim.x: the packs'
// offsets are then immediates of the loads (the scalar 8-pack block
// variant spilled with them computed).
template <bool Log, int kPacks, bool kVec, class Row, int kThreads>
__device__ __forceinline__ void forward_row_in_registers(const float* __restrict__ xr, float* __restrict__ yr,
                                                         int C, MaxSum* partial) {
  using Op = Forward<Log>;
  constexpr int step = kThreads * kPack;
  float v[kPacks * kPack];
  const int first = static_cast<int>(Row::rank()) * kPack;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) load_pack<kVec>(xr, first + k * step, C, -INFINITY, v + k * kPack);
  const MaxSum s = Op::finish(Row::template combine<Op>(values_max_sum<kPacks * kPack>(v), partial));
#pragma unroll
  for (int i = 0; i < kPacks * kPack; ++i) v[i] = Op::out_value(s, v[i]);
#pragma unroll
  for (int k = 0; k < kPacks; ++k) store_pack<kVec>(yr, first + k * step, C, v + k * kPack);
}

// C <= 32 * kPack * kPacks: a warp per row. At least 4 blocks a
// multiprocessor: 50% occupancy, 64 registers a thread.
template <bool Log, int kPacks, bool kVec>
__global__ void __launch_bounds__(kSoftmaxBlock, 4)
    softmax_forward_warp_rows(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t C) {
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t row = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32; row < rows;
       row += int64_t{gridDim.x} * warps_per_block) {
    forward_row_in_registers<Log, kPacks, kVec, WarpRow, 32>(x + row * C, y + row * C, static_cast<int>(C), nullptr);
  }
}

// C <= kBlockRowThreads * kPack * kPacks: a block per row.
template <bool Log, int kPacks, bool kVec>
__global__ void __launch_bounds__(kBlockRowThreads)
    softmax_forward_block_rows(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t C) {
  __shared__ MaxSum partial[kBlockRowThreads / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    forward_row_in_registers<Log, kPacks, kVec, BlockRow, kBlockRowThreads>(x + row * C, y + row * C,
                                                                            static_cast<int>(C), partial);
  }
}

// Longer rows, split: `parts` parts a row (softmax_split_parts), part p
// covering tiles [p * tiles / parts, (p + 1) * tiles / parts) of the row's
// tiles of kSplitTile elements. Work item i is part i % parts of row
// i / parts.
__host__ __device__ __forceinline__ int64_t split_tiles(int64_t C) { return (C + kSplitTile - 1) / kSplitTile; }

template <bool kVec>
__device__ __forceinline__ void load_tile(const float* __restrict__ xr, int64_t tile, int64_t C, float* v) {
#pragma unroll
  for (int k = 0; k < kSplitPacks; ++k) {
    load_pack<kVec, int64_t>(xr, tile * kSplitTile + (int64_t{k} * kSoftmaxBlock + threadIdx.x) * kPack, C,
                             -INFINITY, v + k * kPack);
  }
}

// Pass 1: the (max, sum) of each work item into stats[item].
template <bool kVec>
__global__ void __launch_bounds__(kSoftmaxBlock)
    softmax_forward_part_stats(const float* __restrict__ x, int64_t rows, int64_t C, int64_t parts,
                               MaxSum* __restrict__ stats) {
  __shared__ MaxSum partial[kSoftmaxBlock / 32];
  const int64_t tiles = split_tiles(C);
  for (int64_t item = blockIdx.x; item < rows * parts; item += gridDim.x) {
    const int64_t row = item / parts, part = item % parts;
    MaxSum s{-INFINITY, 0.0f};
    for (int64_t tile = part * tiles / parts; tile < (part + 1) * tiles / parts; ++tile) {
      float v[kSplitPacks * kPack];
      load_tile<kVec>(x + row * C, tile, C, v);
      s = merge(s, values_max_sum<kSplitPacks * kPack>(v));
    }
    s = block_combine<Forward<false>>(s, partial);
    if (threadIdx.x == 0) stats[item] = s;
  }
}

// Pass 2: each block combines its row's parts (the same fixed order in
// every block of the row, so they agree bit for bit) and writes its part.
// The items run from the last: the first ones read are those pass 1 read
// last, the likeliest to be still in L2.
template <bool Log, bool kVec>
__global__ void __launch_bounds__(kSoftmaxBlock)
    softmax_forward_parts_apply(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t C,
                                int64_t parts, const MaxSum* __restrict__ stats) {
  using Op = Forward<Log>;
  __shared__ MaxSum partial[kSoftmaxBlock / 32];
  const int64_t tiles = split_tiles(C), items = rows * parts;
  for (int64_t i = blockIdx.x; i < items; i += gridDim.x) {
    const int64_t item = items - 1 - i;
    const int64_t row = item / parts, part = item % parts;
    MaxSum s = Op::empty();
    for (int64_t q = threadIdx.x; q < parts; q += blockDim.x) s = merge(s, stats[row * parts + q]);
    s = Op::finish(block_combine<Op>(s, partial));
    for (int64_t tile = part * tiles / parts; tile < (part + 1) * tiles / parts; ++tile) {
      float v[kSplitPacks * kPack];
      load_tile<kVec>(x + row * C, tile, C, v);
#pragma unroll
      for (int j = 0; j < kSplitPacks * kPack; ++j) v[j] = Op::out_value(s, v[j]);
#pragma unroll
      for (int k = 0; k < kSplitPacks; ++k) {
        store_pack<kVec, int64_t>(y + row * C, tile * kSplitTile + (int64_t{k} * kSoftmaxBlock + threadIdx.x) * kPack,
                                  C, v + k * kPack);
      }
    }
  }
}

// The parts of each row of a split forward: enough that rows * parts
// reaches kSplitBlocks, at most one a tile. A function of the shape only.
inline int64_t softmax_split_parts(int64_t rows, int64_t C) {
  const int64_t wanted = (kSplitBlocks + rows - 1) / rows;
  return std::max<int64_t>(1, std::min(split_tiles(C), wanted));
}

// Calls f(packs, vec) with packs the smallest of 1, 2, 4, 8 (as an
// std::integral_constant) not below `packs`, and vec as an std::bool_constant.
template <class F>
void with_packs(int64_t packs, bool vec, F&& f) {
  auto pick = [&](auto v) {
    if (packs <= 1) {
      f(std::integral_constant<int, 1>{}, v);
    } else if (packs <= 2) {
      f(std::integral_constant<int, 2>{}, v);
    } else if (packs <= 4) {
      f(std::integral_constant<int, 4>{}, v);
    } else {
      static_assert(kMaxRegisterPacks == 8);
      f(std::integral_constant<int, 8>{}, v);
    }
  };
  vec ? pick(std::true_type{}) : pick(std::false_type{});
}

inline bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <bool Log>
void softmax_forward_rows(const char* name, const float* x, float* y, int64_t rows, int64_t C, MaxSum* workspace) {
  const bool vec = C % kPack == 0 && aligned_16(x) && aligned_16(y);
  if (C <= kWarpRowMax) {
    with_packs((C + 32 * kPack - 1) / (32 * kPack), vec, [&](auto packs, auto v) {
      launch(name, softmax_forward_warp_rows<Log, decltype(packs)::value, decltype(v)::value>,
             dim3(grid_stride_blocks(rows * 32, kSoftmaxBlock)), dim3(kSoftmaxBlock), 0, x, y, rows, C);
    });
  } else if (C <= kBlockRowMax) {
    const int64_t row_packs = (C + kPack - 1) / kPack;
    with_packs((row_packs + kBlockRowThreads - 1) / kBlockRowThreads, vec, [&](auto packs, auto v) {
      launch(name, softmax_forward_block_rows<Log, decltype(packs)::value, decltype(v)::value>,
             dim3(grid_stride_blocks(rows, 1)), dim3(kBlockRowThreads), 0, x, y, rows, C);
    });
  } else {
    const int64_t parts = softmax_split_parts(rows, C);
    const dim3 grid(grid_stride_blocks(rows * parts, 1));
    auto run = [&](auto v) {
      launch(name, softmax_forward_part_stats<decltype(v)::value>, grid, dim3(kSoftmaxBlock), 0, x, rows, C, parts,
             workspace);
      launch(name, softmax_forward_parts_apply<Log, decltype(v)::value>, grid, dim3(kSoftmaxBlock), 0, x, y, rows, C,
             parts, static_cast<const MaxSum*>(workspace));
    };
    vec ? run(std::true_type{}) : run(std::false_type{});
  }
}

// ---------------------------------------------------------------------------
// backward over rows (inner == 1), and both directions for inner > 1
// ---------------------------------------------------------------------------

// Packs of each array a thread loads at once in the backward.
constexpr int kBackwardPacks = 4;

// A thread's packs of grad_y and y in the backward tile from element e
// (0 past the row's end: adds nothing to either sum).
template <bool kVec, int kThreads>
__device__ __forceinline__ void load_backward_tile(const float* __restrict__ gr, const float* __restrict__ yr,
                                                   int64_t e, int64_t C, float* g, float* y) {
  constexpr int64_t step = int64_t{kThreads} * kPack;
#pragma unroll
  for (int k = 0; k < kBackwardPacks; ++k) {
    load_pack<kVec, int64_t>(gr, e + k * step, C, 0.0f, g + k * kPack);
    load_pack<kVec, int64_t>(yr, e + k * step, C, 0.0f, y + k * kPack);
  }
}

// The backward of one row shared by kThreads threads, in tiles of
// kThreads * kBackwardPacks packs of each array (thread `rank` takes packs
// rank, rank + kThreads, ... of a tile, all loaded before any is used): a
// pass summing grad_y * y (grad_y for log_softmax), then a pass writing
// grad_x, which reads the row again, from L1 or L2 (the rows in flight,
// 8 KB a warp row of 1000, 256 KB a block row of 32000 a multiprocessor,
// fit in L2).
template <bool Log, bool kVec, class Row, int kThreads>
__device__ __forceinline__ void backward_row(const float* __restrict__ gr, const float* __restrict__ yr,
                                             float* __restrict__ xr, int64_t C, float* partial) {
  using Op = Backward<Log>;
  constexpr int64_t tile = int64_t{kThreads} * kBackwardPacks * kPack;
  constexpr int64_t step = int64_t{kThreads} * kPack;
  const int64_t first = int64_t{Row::rank()} * kPack;
  float s = Op::empty();
  // e < C: the thread's first pack of the tile is in the row (the others may not be).
  for (int64_t e = first; e < C; e += tile) {
    float g[kBackwardPacks * kPack], y[kBackwardPacks * kPack];
    load_backward_tile<kVec, kThreads>(gr, yr, e, C, g, y);
#pragma unroll
    for (int i = 0; i < kBackwardPacks * kPack; ++i) s = Op::take_value(s, g[i], y[i]);
  }
  s = Row::template combine<Op>(s, partial);
  for (int64_t e = first; e < C; e += tile) {
    float g[kBackwardPacks * kPack], y[kBackwardPacks * kPack];
    load_backward_tile<kVec, kThreads>(gr, yr, e, C, g, y);
#pragma unroll
    for (int i = 0; i < kBackwardPacks * kPack; ++i) g[i] = Op::out_value(s, g[i], y[i]);
#pragma unroll
    for (int k = 0; k < kBackwardPacks; ++k) store_pack<kVec, int64_t>(xr, e + k * step, C, g + k * kPack);
  }
}

// C <= kWarpRowMax: a warp per row.
template <bool Log, bool kVec>
__global__ void __launch_bounds__(kSoftmaxBlock)
    softmax_backward_warp_rows(const float* __restrict__ g, const float* __restrict__ y, float* __restrict__ gx,
                               int64_t rows, int64_t C) {
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t row = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32; row < rows;
       row += int64_t{gridDim.x} * warps_per_block) {
    backward_row<Log, kVec, WarpRow, 32>(g + row * C, y + row * C, gx + row * C, C, nullptr);
  }
}

// Longer rows: a block of kBlockRowThreads per row (the fewer rows in
// flight, the likelier the second pass finds them in L2).
template <bool Log, bool kVec>
__global__ void __launch_bounds__(kBlockRowThreads)
    softmax_backward_block_rows(const float* __restrict__ g, const float* __restrict__ y, float* __restrict__ gx,
                                int64_t rows, int64_t C) {
  __shared__ float partial[kBlockRowThreads / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    backward_row<Log, kVec, BlockRow, kBlockRowThreads>(g + row * C, y + row * C, gx + row * C, C, partial);
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
void softmax_inner_as(const char* name, const float* a, const float* b, float* out, int64_t outer, int64_t C,
                      int64_t inner) {
  launch(name, softmax_inner<Op>, dim3(grid_stride_blocks(outer * inner, kSoftmaxBlock)), dim3(kSoftmaxBlock), 0, a,
         b, out, outer, C, inner);
}

template <bool Log>
void softmax_backward_rows(const char* name, const float* g, const float* y, float* gx, int64_t rows, int64_t C) {
  const bool vec = C % kPack == 0 && aligned_16(g) && aligned_16(y) && aligned_16(gx);
  auto run = [&](auto v) {
    if (C <= kWarpRowMax) {
      launch(name, softmax_backward_warp_rows<Log, decltype(v)::value>,
             dim3(grid_stride_blocks(rows * 32, kSoftmaxBlock)), dim3(kSoftmaxBlock), 0, g, y, gx, rows, C);
    } else {
      launch(name, softmax_backward_block_rows<Log, decltype(v)::value>, dim3(grid_stride_blocks(rows, 1)),
             dim3(kBlockRowThreads), 0, g, y, gx, rows, C);
    }
  };
  vec ? run(std::true_type{}) : run(std::false_type{});
}

// Bytes of device workspace softmax_forward takes for the view: a
// (max, sum) a part of a split row, none for the other variants.
inline size_t softmax_forward_workspace(int64_t outer, int64_t C, int64_t inner) {
  if (outer == 0 || inner != 1 || C <= kBlockRowMax) return 0;
  return static_cast<size_t>(outer * softmax_split_parts(outer, C)) * sizeof(MaxSum);
}

// y = (log_)softmax(x) over C of the (outer, C, inner) view, with
// softmax_forward_workspace(outer, C, inner) bytes at `workspace`.
inline void softmax_forward(bool log, const float* x, float* y, int64_t outer, int64_t C, int64_t inner,
                            void* workspace) {
  if (outer == 0 || C == 0 || inner == 0) return;
  auto* stats = static_cast<MaxSum*>(workspace);
  if (log) {
    inner > 1 ? softmax_inner_as<Forward<true>>("log_softmax", x, nullptr, y, outer, C, inner)
              : softmax_forward_rows<true>("log_softmax", x, y, outer, C, stats);
  } else {
    inner > 1 ? softmax_inner_as<Forward<false>>("softmax", x, nullptr, y, outer, C, inner)
              : softmax_forward_rows<false>("softmax", x, y, outer, C, stats);
  }
}

// grad_x of (log_)softmax from grad_y and y.
inline void softmax_backward(bool log, const float* grad_y, const float* y, float* grad_x, int64_t outer, int64_t C,
                             int64_t inner) {
  if (outer == 0 || C == 0 || inner == 0) return;
  if (log) {
    inner > 1 ? softmax_inner_as<Backward<true>>("log_softmax_backward", grad_y, y, grad_x, outer, C, inner)
              : softmax_backward_rows<true>("log_softmax_backward", grad_y, y, grad_x, outer, C);
  } else {
    inner > 1 ? softmax_inner_as<Backward<false>>("softmax_backward", grad_y, y, grad_x, outer, C, inner)
              : softmax_backward_rows<false>("softmax_backward", grad_y, y, grad_x, outer, C);
  }
}

}  // namespace minidnn::cuda::MINIDNN_CUDA_TARGET
