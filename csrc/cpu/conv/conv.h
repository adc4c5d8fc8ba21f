// Convolution on the CPU: the geometry every convolution kernel shares and
// the drivers the bindings call (conv2d, its two backward passes; the
// transposed convolution and conv1d are expressed through these).
//
// Layouts are the API's: x (N, C, H, W), weight (K, C/groups, R, S),
// y (N, K, P, Q), all C-contiguous float32.
//
// Output (p, q) and tap (r, s) read input row p * stride_h - pad_top + r * dil_h
// and column q * stride_w - pad_left + s * dil_w; a position outside
// [0, h) x [0, w) reads zero. P and Q are given rather than derived, so the
// bottom and right padding need no fields: they are whatever makes P x Q
// outputs (the transposed convolution's crops and its output_padding, which
// can extend past the last tap, are expressed this way too). Every index is
// 64-bit.
#pragma once

#include <cstdint>

#include "cpu/activation/activation.h"

namespace minidnn::cpu {

struct ConvGeometry {
  int64_t n;                 // images
  int64_t c, h, w;           // input channels (all groups) and size
  int64_t k, p, q;           // output channels (all groups) and size
  int64_t r, s;              // kernel rows and columns
  int64_t stride_h, stride_w;
  int64_t dil_h, dil_w;
  int64_t pad_top, pad_left;
  int64_t groups;            // divides c and k
};

// Backward data of a stride-1 convolution is itself a stride-1
// convolution: grad_y (K channels, P x Q) with the kernel rotated by 180
// degrees and its two channel axes swapped within each group, padded by
// dil * (kernel - 1) - pad, into grad_x (C channels, H x W). Its geometry;
// the pads come out negative when g's exceed the dilated kernel's reach,
// which its callers check.
inline ConvGeometry backward_data_as_convolution(const ConvGeometry& g) {
  return ConvGeometry{g.n, g.k, g.p, g.q, g.c, g.h, g.w, g.r, g.s, 1, 1, g.dil_h, g.dil_w,
                      g.dil_h * (g.r - 1) - g.pad_top, g.dil_w * (g.s - 1) - g.pad_left, g.groups};
}

// Work fused into the store of each output tile: y = f(conv + bias).
struct ConvEpilogue {
  const float* bias = nullptr;  // (K,) or null
  bool activate = false;        // apply `activation` (with slope `alpha` for leaky_relu)
  Activation activation = Activation::relu;
  float alpha = 0.01f;
};

// The algorithm conv2d_forward runs for a geometry (conv_forward.cpp gives
// the rule): decided by the shape and the active ISA, never by the thread
// count. `none`: nothing to reduce (empty output, or C/groups x R x S == 0:
// the epilogue of zero).
enum class ConvForwardRoute { none, depthwise, first_layer, taps, winograd, implicit_gemm };
ConvForwardRoute conv2d_forward_route(const ConvGeometry& g);
const char* conv_forward_route_name(ConvForwardRoute route);

// Whether conv2d_forward_on_route can take `route` for `g`: the rule's own
// route, and besides it the two routes that compute any shape they are
// given, implicit_gemm and first_layer (every geometry), and
// taps wherever its own rule admits the shape (the rule may send such a
// shape elsewhere first). When the rule's route is none, only none.
bool conv2d_forward_route_accepts(const ConvGeometry& g, ConvForwardRoute route);

// The three drivers (each fully writes its outputs, poisoned or not; threads
// from runtime/threads.h; results bit-identical for any thread count).

// y (N, K, P, Q) = epilogue(conv(x, weight)).
void conv2d_forward(const ConvGeometry& g, const float* x, const float* weight, const ConvEpilogue& ep, float* y);

// conv2d_forward on a route the caller picks, one that
// conv2d_forward_route_accepts: how the tests run a route on shapes the
// rule sends elsewhere.
void conv2d_forward_on_route(ConvForwardRoute route, const ConvGeometry& g, const float* x, const float* weight,
                             const ConvEpilogue& ep, float* y);

// The algorithm conv2d_backward_data runs for a geometry (conv_backward.cpp
// gives the rule), by the shape and the active ISA, never the thread count.
// `none`: grad_x is empty or all zero (or the bias).
enum class ConvBackwardDataRoute { none, depthwise, plain_1x1, winograd, phases, gemm };
ConvBackwardDataRoute conv2d_backward_data_route(const ConvGeometry& g);
const char* conv_backward_data_route_name(ConvBackwardDataRoute route);

// grad_x (N, C, H, W): the adjoint of conv2d_forward's linear part applied
// to grad_y (N, K, P, Q), plus bias[c] when bias (C,) is not null. The
// transposed convolution's forward is this (with its bias, added in the
// store where the route allows).
void conv2d_backward_data(const ConvGeometry& g, const float* grad_y, const float* weight, float* grad_x,
                          const float* bias = nullptr);

// grad_weight (K, C/groups, R, S) = the sum over images and output positions
// of grad_y times the input each tap read; grad_bias (K,) = grad_y summed
// over N, P, Q, or null when not wanted.
void conv2d_backward_weight(const ConvGeometry& g, const float* grad_y, const float* x, float* grad_weight,
                            float* grad_bias);

}  // namespace minidnn::cpu
