// conv2d_forward's route for stride-1 convolutions with enough channels per
// group: a GEMM per kernel tap reading the input in place (no im2col
// packing of B). Internal to csrc/cpu/conv (conv.h is the public interface).
#pragma once

#include <cstdint>

#include "cpu/conv/conv.h"

namespace minidnn::cpu {

// Whether conv2d_forward takes the tap route for `g` (the rule and its
// reasons are in conv_forward_taps.cpp). Depends on the shape and the
// active ISA's microkernel, never on the thread count.
bool conv_forward_taps_applies(const ConvGeometry& g);

// Where the tap route reads its weight: output channel kk of group gi,
// input channel c of the group, tap (r, s) at
//   first + gi * group_stride + kk * k_stride + c * c_stride + r * tap_row_step + s * tap_col_step.
// The API's (K, C/groups, R, S) layout is taps_weight_of; the transposed
// convolution's phases (conv_backward.cpp) read their sub-sampled, flipped
// kernel with its channel axes swapped from the weight as it lies, with
// negative tap steps.
struct TapsWeight {
  const float* first;
  int64_t group_stride, k_stride, c_stride;
  int64_t tap_row_step, tap_col_step;
};

// Where it writes its output: image i, output channel k, position (p, q) at
//   first + i * image_stride + k * plane_stride + p * row_stride + q * col_stride.
// taps_output_of is the API's (N, K, P, Q) layout; a phase of a transposed
// convolution writes every stride-th row and column of its output.
struct TapsOutput {
  float* first;
  int64_t image_stride, plane_stride, row_stride, col_stride;
};

inline TapsWeight taps_weight_of(const ConvGeometry& g, const float* weight) {
  const int64_t taps = g.r * g.s, cg = g.c / g.groups;
  return TapsWeight{weight, g.k / g.groups * cg * taps, cg * taps, taps, g.s, 1};
}

inline TapsOutput taps_output_of(const ConvGeometry& g, float* y) {
  return TapsOutput{y, g.k * g.p * g.q, g.p * g.q, g.q, 1};
}

// conv2d_forward for a geometry conv_forward_taps_applies accepts, with
// N, K, P x Q and C / groups all at least 1.
void conv2d_forward_taps(const ConvGeometry& g, const float* x, const TapsWeight& weight, const ConvEpilogue& ep,
                         const TapsOutput& y);

// The flat range [flat0, flat0 + span) of the padded grid (hp x wp, row
// after row; grid (i, j) = input (i - pad_top, j - pad_left), zero outside)
// of `channels` input planes at xg into dst, span floats a channel: what a
// column block of the tap route reads, and the grid of the grouped weight
// gradient (conv_backward.cpp).
void build_band(const ConvGeometry& g, const float* xg, int64_t channels, int64_t flat0, int64_t span, int64_t wp,
                float* dst);

}  // namespace minidnn::cpu
