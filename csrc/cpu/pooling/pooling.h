// Pooling (NCHW): the kernel table each ISA variant fills in.
//
// Every pooling op here works on planes (one (n, c) image each) through
// two axis tables, one for H and one for W, built once per call outside
// the ISA code (csrc/bindings/pooling.cpp): output o of an axis reads the
// input positions first[o] + t * dilation for t in [0, taps[o]), which
// are the kernel taps skip[o] .. skip[o] + taps[o] - 1 (the others lie in
// padding). Max and average pooling have regular windows (o * stride - pad
// + j * dilation); adaptive pooling has windows of varying size, given by
// the same tables with dilation 1.
#pragma once

#include <cstdint>

namespace minidnn::cpu {

struct PoolAxis {
  int64_t in = 0, out = 0;
  int64_t kernel = 1, stride = 1, dilation = 1, pad = 0;
  // Regular windows: outputs [full_lo, full_hi) have every kernel tap in
  // range (the unpadded interior, where the kernels vectorize). false for
  // adaptive windows.
  bool regular = false;
  int64_t full_lo = 0, full_hi = 0;
  const int64_t* first = nullptr;  // [out]
  const int64_t* skip = nullptr;   // [out]
  const int64_t* taps = nullptr;   // [out]
  // [out]: average pooling's divisor factor of each output (the taps in
  // range, or inside the padded input with count_include_pad); the
  // divisor of output (p, q) is h.count[p] * w.count[q].
  const float* count = nullptr;
};

struct PoolGeometry {
  int64_t planes = 0;  // N * C
  PoolAxis h, w;
};

struct PoolingKernels {
  // y (planes, h.out, w.out) = the window maxima; indices, when not null,
  // the flat position in its input plane of each (PyTorch's rule: a value
  // replaces the maximum when greater or NaN, in scan order, starting from
  // the window's first in-range position). Every window has a tap in range.
  void (*max_forward)(const PoolGeometry& g, const float* x, float* y, int64_t* indices);
  // y = window sum / divisor: `divisor` when > 0, else h.count[p] *
  // w.count[q]; 0 where that is 0.
  void (*avg_forward)(const PoolGeometry& g, const float* x, float* y, float divisor);
  // The adjoint of avg_forward, gathered plane by plane.
  void (*avg_backward)(const PoolGeometry& g, const float* grad_y, float* grad_x, float divisor);
  // grad_x (planes, in_plane) = 0, then grad_x[p][indices[p][o]] += grad_y[p][o];
  // false (grad_x then partly written) if an index lies outside [0, in_plane).
  bool (*max_backward)(int64_t planes, int64_t in_plane, int64_t out_plane, const float* grad_y,
                       const int64_t* indices, float* grad_x);
  // y (planes, out_plane) = 0, then y[p][indices[p][o]] = x[p][o] in order;
  // false if an index lies outside [0, out_plane).
  bool (*max_unpool)(int64_t planes, int64_t x_plane, int64_t out_plane, const float* x, const int64_t* indices,
                     float* y);
};

const PoolingKernels& pooling_kernels_scalar();
const PoolingKernels& pooling_kernels_avx2();
const PoolingKernels& pooling_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const PoolingKernels& pooling_kernels();

}  // namespace minidnn::cpu
