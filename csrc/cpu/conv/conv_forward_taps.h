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

// conv2d_forward for a geometry conv_forward_taps_applies accepts, with
// N, K, P x Q and C / groups all at least 1.
void conv2d_forward_taps(const ConvGeometry& g, const float* x, const float* weight, const ConvEpilogue& ep,
                         float* y);

// The flat range [flat0, flat0 + span) of the padded grid (hp x wp, row
// after row; grid (i, j) = input (i - pad_top, j - pad_left), zero outside)
// of `channels` input planes at xg into dst, span floats a channel: what a
// column block of the tap route reads, and the grid of the grouped weight
// gradient (conv_backward.cpp).
void build_band(const ConvGeometry& g, const float* xg, int64_t channels, int64_t flat0, int64_t span, int64_t wp,
                float* dst);

}  // namespace minidnn::cpu
