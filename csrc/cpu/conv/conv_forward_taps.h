// conv2d_forward's route for stride-1 convolutions with enough channels per
// group: a GEMM per kernel tap reading the input in place (no im2col
// packing of B). Internal to csrc/cpu/conv (conv.h is the public interface).
#pragma once

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

}  // namespace minidnn::cpu
