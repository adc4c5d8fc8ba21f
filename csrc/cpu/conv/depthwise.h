// Depthwise convolution: groups == C, weight (K, 1, R, S) with K = C * m
// (channel multiplier m >= 1); output channel k reads input channel k / m
// alone. Each output is R * S multiply-adds over one input plane, so the
// layer is memory-bound and gets its own kernel rather than a GEMM: it
// streams each input plane once per output channel, vectorized along the
// output row. The kernel table each ISA variant fills in.
#pragma once

#include "cpu/conv/conv.h"

namespace minidnn::cpu {

// True when g is a depthwise convolution the kernels take: groups == C >= 1
// and K a multiple of C.
bool is_depthwise(const ConvGeometry& g);

struct DepthwiseKernels {
  // y (N, K, P, Q) = epilogue(conv(x, weight)) for is_depthwise(g): every
  // output written; reads only inside x (N, C, H, W), weight (K, 1, R, S)
  // and the bias, for any P and Q; bit-identical for any thread count.
  void (*forward)(const ConvGeometry& g, const float* x, const float* weight, const ConvEpilogue& ep, float* y);
};

const DepthwiseKernels& depthwise_kernels_scalar();
const DepthwiseKernels& depthwise_kernels_avx2();
const DepthwiseKernels& depthwise_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const DepthwiseKernels& depthwise_kernels();

}  // namespace minidnn::cpu
