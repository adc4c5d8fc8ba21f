// cross_entropy and nll_loss, forward and backward, on a CUDA device (see
// prelude.cuh for the two compilations). The input is viewed as
// (outer, C, inner) with the classes on C, one loss element per
// (outer, inner) position, with the CPU kernels' semantics
// (cpu/softmax/softmax_impl.h):
//   class targets:       loss = (1-eps) w_t (lse - x_t) + eps/C sum_c w_c (lse - x_c)
//   probability targets: loss = sum_c w_c q_c (lse - x_c), q = target (1-eps) + eps/C
// From the row statistics m = max x, s = sum exp(x - m), qw = sum wq and
// d = sum wq (m - x) (wq = w_c for smoothed class targets, w_c q_c for
// probabilities): lse - x = (m - x) + log s, and sum wq (lse - x) =
// qw log s + d, a sum of non-negative terms. The gradient wrt logit c is
//   class: g ((1-eps) w_t + eps/C W) p_c - g eps/C w_c - [c == t] g (1-eps) w_t
//   prob:  g qw p_c - g w_c q_c
// (p = softmax(x), W = sum_c w_c): a scale A on exp(x - m) minus B wq_c,
// and one correction at the target.
//
// Forward: one pass over the logits (max, sum of exp and the target terms
// together, online), a warp per row for rows up to kWarpRowMax, a block
// per row beyond, a thread per position when inner > 1. Then two small
// kernels reduce the per-element losses and the targets' weights in a
// fixed order (block partials, then one block; no atomics), which also
// finds the first class target out of range.
// Backward: the statistics pass keeps each thread's first kChunk elements
// of the row in registers (all of a row up to 32 * kChunk long in a warp,
// kLossBlock * kChunk in a block), so the pass that writes the gradient
// reads the logits again only past that (from L2 on a GPU while the rows
// in flight fit in it). Every pass reads kChunk elements a thread at once.
// A class target out of range is never read through: its loss is NaN, its
// gradient row 0, and the bindings raise IndexError from the reduction's
// first bad position.
#pragma once

#include <cmath>

#include "cuda/kernels/kernels.h"
#include "cuda/kernels/prelude.cuh"
#include "cuda/kernels/softmax.cuh"

namespace minidnn::cuda::MINIDNN_CUDA_TARGET {

constexpr unsigned kLossBlock = 1024;     // threads of a block row
constexpr unsigned kLossWarpBlock = 256;  // threads of the warp-row, inner and NLL kernels
// Elements a thread loads at once, and keeps in registers for the backward.
constexpr int kChunk = 8;
constexpr unsigned kReduceBlock = 256;

// 1 for a class in [0, C), 0 for ignore_index, -1 out of range.
__device__ __forceinline__ int classify_target(int64_t t, int64_t ignore_index, int64_t C) {
  if (t == ignore_index) return 0;
  return t >= 0 && t < C ? 1 : -1;
}

// What the kernels read besides the input (device pointers), and label
// smoothing's constants.
struct LossParams {
  const int64_t* index;  // class targets (outer * inner), or null
  const float* prob;     // probability targets shaped like the logits, or null
  const float* weight;   // (C), or null for all ones
  int64_t ignore_index;
  float keep;     // 1 - eps
  float uniform;  // eps / C
};

enum class TargetKind { index, smoothed_index, prob };

// Row statistics; d and qw stay 0 where the target kind needs neither.
struct LossStats {
  MaxSum ms;
  float d;   // sum wq (m - x)
  float qw;  // sum wq
};

__device__ __forceinline__ LossStats shuffle_xor(LossStats v, int offset) {
  return {shuffle_xor(v.ms, offset), shuffle_xor(v.d, offset), shuffle_xor(v.qw, offset)};
}

// d relative to a new max m (for an old max of -inf, d holds only the terms
// of -inf logits, inf or NaN, which stay as they are).
__device__ __forceinline__ float shift_distance(float d, float qw, float old_max, float m) {
  return old_max > -INFINITY ? d + (m - old_max) * qw : d;
}

template <TargetKind kKind, bool kWeighted>
struct LossOp {
  static constexpr bool kClass = kKind != TargetKind::prob;
  // The statistics carry d and qw (else only the max and the sum of exp).
  static constexpr bool kTerms = kKind != TargetKind::index;
  using State = LossStats;

  static __device__ __forceinline__ State empty() { return {{-INFINITY, 0.0f}, 0.0f, 0.0f}; }

  // wq of class c whose logit sits at offset `at`.
  static __device__ __forceinline__ float wq(const LossParams& p, int64_t c, int64_t at) {
    float v = kWeighted ? p.weight[c] : 1.0f;
    if constexpr (kKind == TargetKind::prob) v *= p.prob[at] * p.keep + p.uniform;
    return v;
  }

  static __device__ __forceinline__ State take(State s, float x, const LossParams& p, int64_t c, int64_t at) {
    if constexpr (!kTerms) {
      return {take_element(s.ms, x), 0.0f, 0.0f};
    } else {
      const float w = wq(p, c, at);
      const float old_max = s.ms.max;
      s.ms = take_element(s.ms, x);
      // wq (m - -inf): inf, or NaN for wq = 0 (0 * inf, as the reference).
      s.d = x == -INFINITY ? s.d + w * INFINITY : shift_distance(s.d, s.qw, old_max, s.ms.max) + w * (s.ms.max - x);
      s.qw += w;
      return s;
    }
  }

  static __device__ __forceinline__ State combine(State a, State b) {
    const MaxSum ms = merge(a.ms, b.ms);
    if constexpr (!kTerms) {
      return {ms, 0.0f, 0.0f};
    } else {
      return {ms, shift_distance(a.d, a.qw, a.ms.max, ms.max) + shift_distance(b.d, b.qw, b.ms.max, ms.max),
              a.qw + b.qw};
    }
  }

  // The loss of an element from its row's statistics and the logit x_t and
  // weight w_t of its class target (class kinds).
  static __device__ __forceinline__ float loss(const LossParams& p, State s, float x_t, float w_t) {
    const float log_s = logf(s.ms.sum);
    if constexpr (kKind == TargetKind::prob) {
      return s.qw * log_s + s.d;
    } else {
      float l = p.keep * w_t * ((s.ms.max - x_t) + log_s);
      if constexpr (kTerms) l += p.uniform * (s.qw * log_s + s.d);
      return l;
    }
  }

  // A (before the division by s) and B of the gradient of an element of
  // scale g.
  static __device__ __forceinline__ void gradient_terms(const LossParams& p, State s, float w_t, float g, float* a,
                                                        float* b) {
    if constexpr (kKind == TargetKind::prob) {
      *a = g * s.qw;
      *b = g;
    } else if constexpr (kTerms) {
      *a = g * (p.keep * w_t + p.uniform * s.qw);
      *b = g * p.uniform;
    } else {
      *a = g * w_t;
      *b = 0.0f;
    }
  }

  static __device__ __forceinline__ float gradient(const LossParams& p, float x, float m, float a, float b, int64_t c,
                                                   int64_t at) {
    float g = a * expf(x - m);
    if constexpr (kTerms) g -= b * wq(p, c, at);
    return g;
  }
};

// A row is read in chunks of kChunk elements a thread (element
// first + k * size for the k-th), all loads of a chunk issued before any is
// used: kChunk loads in flight a thread, where one at a time would leave a
// GPU's memory latency-bound.

template <class Row>
__device__ __forceinline__ void load_chunk(const float* __restrict__ xr, int64_t first, int64_t C, float* v) {
#pragma unroll
  for (int k = 0; k < kChunk; ++k) {
    const int64_t j = first + int64_t{k} * Row::size();
    v[k] = j < C ? xr[j] : 0.0f;
  }
}

template <class Op, class Row>
__device__ __forceinline__ LossStats take_chunk(LossStats s, const float* v, const LossParams& p, int64_t row,
                                                int64_t first, int64_t C) {
#pragma unroll
  for (int k = 0; k < kChunk; ++k) {
    const int64_t j = first + int64_t{k} * Row::size();
    if (j < C) s = Op::take(s, v[k], p, j, row * C + j);
  }
  return s;
}

// The statistics of a row, combined over the row's threads; `cached` gets
// the thread's first chunk.
template <class Op, class Row>
__device__ __forceinline__ LossStats row_stats(const float* __restrict__ xr, const LossParams& p, int64_t row,
                                               int64_t C, float* cached, LossStats* partial) {
  const int64_t step = int64_t{kChunk} * Row::size();
  load_chunk<Row>(xr, Row::rank(), C, cached);
  LossStats s = take_chunk<Op, Row>(Op::empty(), cached, p, row, Row::rank(), C);
  for (int64_t first = Row::rank() + step; first < C; first += step) {
    float v[kChunk];
    load_chunk<Row>(xr, first, C, v);
    s = take_chunk<Op, Row>(s, v, p, row, first, C);
  }
  return Row::template combine<Op>(s, partial);
}

// The gradient scale of element e: grad_loss[e] ("none"), or the scalar
// from the device or the host, divided by the reduced weight for "mean".
struct GradScale {
  const float* per_element;
  const float* device_scalar;
  float scalar;
  const LossPartial* mean_total;  // non-null for "mean"

  __device__ __forceinline__ float at(int64_t e) const {
    float g = per_element != nullptr ? per_element[e] : device_scalar != nullptr ? *device_scalar : scalar;
    // A multiply by the reciprocal, not a division, whose slow-path call
    // spilled registers (g * inf where the counted weights sum to 0, as g / 0).
    if (mean_total != nullptr) g *= __frcp_rn(static_cast<float>(mean_total->weight));
    return g;
  }
};

// The class target of element e and its weight; false (and loss NaN or 0)
// unless it is a class in range.
__device__ __forceinline__ bool class_target(const LossParams& p, int64_t e, int64_t C, int64_t* t, float* w_t,
                                             float* skipped_loss) {
  *t = p.index[e];
  const int kind = classify_target(*t, p.ignore_index, C);
  *skipped_loss = kind == 0 ? 0.0f : NAN;
  *w_t = kind == 1 && p.weight != nullptr ? p.weight[*t] : 1.0f;
  return kind == 1;
}

// ---------------------------------------------------------------------------
// cross_entropy forward: the per-element losses
// ---------------------------------------------------------------------------

template <class Op, class Row>
__device__ __forceinline__ void cross_entropy_row(const float* __restrict__ x, const LossParams& p, int64_t row,
                                                  int64_t C, float* __restrict__ loss, LossStats* partial) {
  int64_t t = 0;
  float w_t = 1.0f, skipped;
  // The same decision in every thread of the row: no barrier is left to part of it.
  if (Op::kClass && !class_target(p, row, C, &t, &w_t, &skipped)) {
    if (Row::rank() == 0) loss[row] = skipped;
    return;
  }
  const float* xr = x + row * C;
  float first_chunk[kChunk];
  const LossStats s = row_stats<Op, Row>(xr, p, row, C, first_chunk, partial);
  if (Row::rank() == 0) loss[row] = Op::loss(p, s, Op::kClass ? xr[t] : 0.0f, w_t);
}

template <class Op>
__global__ void __launch_bounds__(kLossWarpBlock)
    cross_entropy_warp_rows(const float* __restrict__ x, LossParams p, int64_t rows, int64_t C,
                            float* __restrict__ loss) {
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t row = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32; row < rows;
       row += int64_t{gridDim.x} * warps_per_block) {
    cross_entropy_row<Op, WarpRow>(x, p, row, C, loss, nullptr);
  }
}

template <class Op>
__global__ void __launch_bounds__(kLossBlock)
    cross_entropy_block_rows(const float* __restrict__ x, LossParams p, int64_t rows, int64_t C,
                             float* __restrict__ loss) {
  __shared__ LossStats partial[kLossBlock / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    cross_entropy_row<Op, BlockRow>(x, p, row, C, loss, partial);
  }
}

// inner > 1: a thread per (outer, inner) position walking C with stride
// inner, so neighbouring threads read neighbouring addresses.
template <class Op>
__global__ void __launch_bounds__(kLossWarpBlock)
    cross_entropy_inner(const float* __restrict__ x, LossParams p, int64_t outer, int64_t C, int64_t inner,
                        float* __restrict__ loss) {
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < outer * inner;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t base = e / inner * C * inner + e % inner;
    int64_t t = 0;
    float w_t = 1.0f, skipped;
    if (Op::kClass && !class_target(p, e, C, &t, &w_t, &skipped)) {
      loss[e] = skipped;
      continue;
    }
    LossStats s = Op::empty();
    for (int64_t c = 0; c < C; ++c) s = Op::take(s, x[base + c * inner], p, c, base + c * inner);
    loss[e] = Op::loss(p, s, Op::kClass ? x[base + t * inner] : 0.0f, w_t);
  }
}

// ---------------------------------------------------------------------------
// cross_entropy backward
// ---------------------------------------------------------------------------

template <class Op, class Row>
__device__ __forceinline__ void cross_entropy_backward_row(const float* __restrict__ x, const LossParams& p,
                                                           const GradScale& scale, int64_t row, int64_t C,
                                                           float* __restrict__ grad, LossStats* partial) {
  const unsigned rank = Row::rank(), size = Row::size();
  float* gr = grad + row * C;
  int64_t t = -1;
  float w_t = 1.0f, skipped;
  if (Op::kClass && !class_target(p, row, C, &t, &w_t, &skipped)) {
    for (int64_t j = rank; j < C; j += size) gr[j] = 0.0f;
    return;
  }
  const float* xr = x + row * C;
  float cached[kChunk];
  const LossStats s = row_stats<Op, Row>(xr, p, row, C, cached, partial);
  const float g = scale.at(row);
  float a, b;
  Op::gradient_terms(p, s, w_t, g, &a, &b);
  a *= __frcp_rn(s.ms.sum);
  const float fix = g * p.keep * w_t;  // subtracted at the target (class kinds)
  const int64_t step = int64_t{kChunk} * size;
  for (int64_t first = rank; first < C; first += step) {
    float v[kChunk];
    if (first == rank) {
#pragma unroll
      for (int k = 0; k < kChunk; ++k) v[k] = cached[k];
    } else {
      load_chunk<Row>(xr, first, C, v);
    }
#pragma unroll
    for (int k = 0; k < kChunk; ++k) {
      const int64_t j = first + int64_t{k} * size;
      if (j < C) {
        const float out = Op::gradient(p, v[k], s.ms.max, a, b, j, row * C + j);
        gr[j] = j == t ? out - fix : out;
      }
    }
  }
}

template <class Op>
__global__ void __launch_bounds__(kLossWarpBlock)
    cross_entropy_backward_warp_rows(const float* __restrict__ x, LossParams p, GradScale scale, int64_t rows,
                                     int64_t C, float* __restrict__ grad) {
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t row = int64_t{blockIdx.x} * warps_per_block + threadIdx.x / 32; row < rows;
       row += int64_t{gridDim.x} * warps_per_block) {
    cross_entropy_backward_row<Op, WarpRow>(x, p, scale, row, C, grad, nullptr);
  }
}

template <class Op>
__global__ void __launch_bounds__(kLossBlock)
    cross_entropy_backward_block_rows(const float* __restrict__ x, LossParams p, GradScale scale, int64_t rows,
                                      int64_t C, float* __restrict__ grad) {
  __shared__ LossStats partial[kLossBlock / 32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    cross_entropy_backward_row<Op, BlockRow>(x, p, scale, row, C, grad, partial);
  }
}

template <class Op>
__global__ void __launch_bounds__(kLossWarpBlock)
    cross_entropy_backward_inner(const float* __restrict__ x, LossParams p, GradScale scale, int64_t outer, int64_t C,
                                 int64_t inner, float* __restrict__ grad) {
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < outer * inner;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t base = e / inner * C * inner + e % inner;
    int64_t t = -1;
    float w_t = 1.0f, skipped;
    if (Op::kClass && !class_target(p, e, C, &t, &w_t, &skipped)) {
      for (int64_t c = 0; c < C; ++c) grad[base + c * inner] = 0.0f;
      continue;
    }
    LossStats s = Op::empty();
    for (int64_t c = 0; c < C; ++c) s = Op::take(s, x[base + c * inner], p, c, base + c * inner);
    const float g = scale.at(e);
    float a, b;
    Op::gradient_terms(p, s, w_t, g, &a, &b);
    a *= __frcp_rn(s.ms.sum);
    const float fix = g * p.keep * w_t;
    for (int64_t c = 0; c < C; ++c) {
      const float v = Op::gradient(p, x[base + c * inner], s.ms.max, a, b, c, base + c * inner);
      grad[base + c * inner] = c == t ? v - fix : v;
    }
  }
}

// ---------------------------------------------------------------------------
// nll_loss: a gather and a scatter into zeros
// ---------------------------------------------------------------------------

__global__ void __launch_bounds__(kLossWarpBlock)
    nll_loss_elements(const float* __restrict__ log_probs, LossParams p, int64_t outer, int64_t C, int64_t inner,
                      float* __restrict__ loss) {
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < outer * inner;
       e += int64_t{gridDim.x} * blockDim.x) {
    int64_t t;
    float w_t, skipped;
    loss[e] = class_target(p, e, C, &t, &w_t, &skipped) ? -w_t * log_probs[(e / inner * C + t) * inner + e % inner]
                                                        : skipped;
  }
}

// Every gradient element written once, by its own thread.
__global__ void __launch_bounds__(kLossWarpBlock)
    nll_loss_gradient(LossParams p, GradScale scale, int64_t outer, int64_t C, int64_t inner,
                      float* __restrict__ grad) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < outer * C * inner;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = i / (C * inner), j = i % inner, c = i / inner % C;
    const int64_t e = o * inner + j;
    int64_t t;
    float w_t, skipped;
    grad[i] = class_target(p, e, C, &t, &w_t, &skipped) && t == c ? -w_t * scale.at(e) : 0.0f;
  }
}

// ---------------------------------------------------------------------------
// reductions: the summed loss, the summed weight of the counted targets (the
// "mean" divisor: their weights, their number without weight, every
// element for probability targets) and the first target out of range
// ---------------------------------------------------------------------------

__device__ __forceinline__ LossPartial combine_partials(const LossPartial& a, const LossPartial& b) {
  return {a.loss + b.loss, a.weight + b.weight, a.first_bad < b.first_bad ? a.first_bad : b.first_bad};
}

// The block's combined partial, returned in thread 0 (other threads get a
// partial sum): a tree over `tree` (kReduceBlock entries of shared memory)
// in a fixed order. Each thread keeps its own entry in a register, so no
// thread reads the entry thread 0 writes last (compute-sanitizer's racecheck
// reported that read when the result came back through tree[0]).
__device__ __forceinline__ LossPartial reduce_block(LossPartial acc, LossPartial* tree) {
  tree[threadIdx.x] = acc;
  for (unsigned half = kReduceBlock / 2; half > 0; half /= 2) {
    __syncthreads();
    if (threadIdx.x < half) {
      acc = combine_partials(acc, tree[threadIdx.x + half]);
      tree[threadIdx.x] = acc;
    }
  }
  return acc;
}

__global__ void __launch_bounds__(kReduceBlock)
    loss_partials(const float* __restrict__ loss, LossParams p, int64_t C, int64_t n,
                  LossPartial* __restrict__ partials) {
  __shared__ LossPartial tree[kReduceBlock];
  LossPartial acc{0.0, 0.0, n};
  for (int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < n; e += int64_t{gridDim.x} * blockDim.x) {
    if (loss != nullptr) acc.loss += loss[e];
    if (p.index == nullptr) {
      acc.weight += 1.0;
      continue;
    }
    int64_t t;
    float w_t, skipped;
    if (class_target(p, e, C, &t, &w_t, &skipped)) {
      acc.weight += w_t;
    } else if (skipped != 0.0f && e < acc.first_bad) {
      acc.first_bad = e;
    }
  }
  acc = reduce_block(acc, tree);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block over the partials: the total into ws->total and, when `out`
// is set, the reduced loss (the sum, or over the weight for "mean").
__global__ void __launch_bounds__(kReduceBlock)
    loss_total(LossWorkspace* ws, unsigned count, int64_t n, bool mean, float* __restrict__ out) {
  __shared__ LossPartial tree[kReduceBlock];
  LossPartial acc{0.0, 0.0, n};
  for (unsigned i = threadIdx.x; i < count; i += blockDim.x) acc = combine_partials(acc, ws->partials[i]);
  acc = reduce_block(acc, tree);
  if (threadIdx.x == 0) {
    ws->total = acc;
    if (out != nullptr) *out = static_cast<float>(mean ? acc.loss / acc.weight : acc.loss);
  }
}

// ---------------------------------------------------------------------------
// host-side entries
// ---------------------------------------------------------------------------

inline LossParams loss_params(const LossInput& in) {
  const double eps = in.label_smoothing;
  return {in.index, in.prob, in.weight, in.ignore_index, static_cast<float>(1.0 - eps),
          static_cast<float>(eps / static_cast<double>(in.classes))};
}

// Launches the reduction over the n elements (`loss` may be null: then
// only the weights and the range check).
inline void reduce_loss(const char* name, const LossInput& in, const float* loss, LossWorkspace* ws, bool mean,
                        float* out) {
  const int64_t n = in.outer * in.inner;
  const int64_t wanted = (n + kReduceBlock * 8 - 1) / (kReduceBlock * 8);
  // A function of n only: the same partials, so the same bits, on any device.
  const unsigned blocks = static_cast<unsigned>(wanted < 1 ? 1 : wanted < kMaxLossPartials ? wanted : kMaxLossPartials);
  launch(name, loss_partials, dim3(blocks), dim3(kReduceBlock), 0, loss, loss_params(in), in.classes, n,
         ws->partials);
  launch(name, loss_total, dim3(1), dim3(kReduceBlock), 0, ws, blocks, n, mean, out);
}

// Calls f(Op{}) with the LossOp of the input's target kind and weighting.
template <class F>
void with_loss_op(const LossInput& in, F&& f) {
  const bool w = in.weight != nullptr;
  if (in.prob != nullptr) {
    w ? f(LossOp<TargetKind::prob, true>{}) : f(LossOp<TargetKind::prob, false>{});
  } else if (in.label_smoothing > 0.0f) {
    w ? f(LossOp<TargetKind::smoothed_index, true>{}) : f(LossOp<TargetKind::smoothed_index, false>{});
  } else {
    w ? f(LossOp<TargetKind::index, true>{}) : f(LossOp<TargetKind::index, false>{});
  }
}

inline void loss_forward(bool nll, const LossInput& in, LossReduction reduction, float* per_element,
                         LossWorkspace* ws, float* out) {
  const char* name = nll ? "nll_loss" : "cross_entropy";
  const int64_t n = in.outer * in.inner, C = in.classes;
  const LossParams p = loss_params(in);
  if (n > 0 && nll) {
    launch(name, nll_loss_elements, dim3(grid_stride_blocks(n, kLossWarpBlock)), dim3(kLossWarpBlock), 0, in.x, p,
           in.outer, C, in.inner, per_element);
  } else if (n > 0) {
    with_loss_op(in, [&](auto op) {
      using Op = decltype(op);
      if (in.inner > 1) {
        launch(name, cross_entropy_inner<Op>, dim3(grid_stride_blocks(n, kLossWarpBlock)), dim3(kLossWarpBlock), 0,
               in.x, p, in.outer, C, in.inner, per_element);
      } else if (C <= kWarpRowMax) {
        launch(name, cross_entropy_warp_rows<Op>, dim3(grid_stride_blocks(n * 32, kLossWarpBlock)),
               dim3(kLossWarpBlock), 0, in.x, p, n, C, per_element);
      } else {
        launch(name, cross_entropy_block_rows<Op>, dim3(grid_stride_blocks(n, 1)), dim3(kLossBlock), 0, in.x, p, n,
               C, per_element);
      }
    });
  }
  const bool reduced = reduction != LossReduction::none;
  if (reduced || in.index != nullptr) {
    reduce_loss(name, in, reduced ? per_element : nullptr, ws, reduction == LossReduction::mean,
                reduced ? out : nullptr);
  }
}

inline void loss_backward(bool nll, const LossInput& in, LossReduction reduction, const LossGrad& grad_loss,
                          LossWorkspace* ws, float* grad) {
  const char* name = nll ? "nll_loss_backward" : "cross_entropy_backward";
  const int64_t n = in.outer * in.inner, C = in.classes;
  const bool mean = reduction == LossReduction::mean;
  if (mean || in.index != nullptr) reduce_loss(name, in, nullptr, ws, mean, nullptr);
  if (n == 0) return;
  const LossParams p = loss_params(in);
  const GradScale scale{grad_loss.per_element, grad_loss.device_scalar, grad_loss.scalar,
                        mean ? &ws->total : nullptr};
  if (nll) {
    launch(name, nll_loss_gradient, dim3(grid_stride_blocks(n * C, kLossWarpBlock)), dim3(kLossWarpBlock), 0, p,
           scale, in.outer, C, in.inner, grad);
    return;
  }
  with_loss_op(in, [&](auto op) {
    using Op = decltype(op);
    if (in.inner > 1) {
      launch(name, cross_entropy_backward_inner<Op>, dim3(grid_stride_blocks(n, kLossWarpBlock)),
             dim3(kLossWarpBlock), 0, in.x, p, scale, in.outer, C, in.inner, grad);
    } else if (C <= kWarpRowMax) {
      launch(name, cross_entropy_backward_warp_rows<Op>, dim3(grid_stride_blocks(n * 32, kLossWarpBlock)),
             dim3(kLossWarpBlock), 0, in.x, p, scale, n, C, grad);
    } else {
      launch(name, cross_entropy_backward_block_rows<Op>, dim3(grid_stride_blocks(n, 1)), dim3(kLossBlock), 0, in.x,
             p, scale, n, C, grad);
    }
  });
}

}  // namespace minidnn::cuda::MINIDNN_CUDA_TARGET
