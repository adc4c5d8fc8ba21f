// conv2d_forward's Winograd route, F(4x4, 3x3): 3x3 stride-1 undilated
// convolutions with groups == 1 and enough channels (the rule and the
// algorithm are in conv_forward_winograd.cpp), and the backward data of
// those convolutions. Internal to csrc/cpu/conv (conv.h is the public
// interface).
//
// Each 4x4 output tile is computed from the 6x6 input patch around it as
//
//   Y = A^T [ sum over c of (G g_kc G^T) (.) (B^T d_c B) ] A
//
// with (.) the element-wise product over the 36 transform points: 36
// independent GEMMs (tiles x C times C x K), one per point, between the
// transforms. The transforms are the per-ISA kernels below, vectorized
// across tiles (input) or output channels (weight, output).
#pragma once

#include <cstdint>

#include "cpu/conv/conv.h"

namespace minidnn::cpu {

// Output tile side, input patch side, transform points.
constexpr int kWinogradTile = 4;
constexpr int kWinogradPatch = 6;
constexpr int kWinogradPoints = kWinogradPatch * kWinogradPatch;

// Whether conv2d_forward takes the Winograd route for `g` (shape only,
// never the thread count or the ISA).
bool conv_forward_winograd_applies(const ConvGeometry& g);

// conv2d_forward for a geometry conv_forward_winograd_applies accepts, with
// N, K, P x Q and C all at least 1.
void conv2d_forward_winograd(const ConvGeometry& g, const float* x, const float* weight, const ConvEpilogue& ep,
                             float* y);

// Backward data of a 3x3 stride-1 undilated convolution with groups 1 is
// itself such a convolution: grad_y (K channels, P x Q) convolved with the
// kernel rotated by 180 degrees, its two channel axes swapped, padded by
// 2 - pad_top and 2 - pad_left, into grad_x (C channels, H x W). It runs on
// this route when that convolution would (conv_forward_winograd_applies),
// the rotated kernel read in place by the weight transform.
bool conv_backward_data_winograd_applies(const ConvGeometry& g);
void conv2d_backward_data_winograd(const ConvGeometry& g, const float* grad_y, const float* weight, float* grad_x);

// Where the 3x3 filter of output channel k and input channel c of the
// convolution lies: its 9 taps at data + k * out_stride + c * in_stride,
// row-major, or in reverse order when `rotated` (rotated by 180 degrees).
// A forward weight (K, C, 3, 3) is {w, C * 9, 9, false}; the kernel of
// backward data, for the same array, {w, 9, C * 9, true}.
struct WinogradFilters {
  const float* data;
  int64_t out_stride;
  int64_t in_stride;
  bool rotated;
};

struct WinogradTransforms {
  // The filters of `count` (<= `width`) consecutive output channels from
  // `first`, each with `channels` input channels, transformed: point xi of
  // filter (first + k, c) at dst[xi * point_stride + c * width + k]; lanes
  // k in [count, width) are zero (`width` is a multiple of the SIMD width:
  // a packed GEMM B panel).
  void (*weight)(const WinogradFilters& filters, int64_t first, int64_t channels, int count, int width, float* dst,
                 int64_t point_stride);

  // The input patches of `tiles` tiles (<= 16), tile l's 6x6 patch at
  // band + offsets[l] (rows band_row apart; the next channel's band_plane
  // floats further), transformed: point xi of (tile l, channel c) at
  // dst[xi * point_stride + c * channel_stride + l].
  void (*input)(const float* band, const int32_t* offsets, int tiles, int64_t band_plane, int64_t band_row,
                int64_t channels, float* dst, int64_t channel_stride, int64_t point_stride);

  // The output transform of one tile's `channels` channels (point xi of
  // channel k at m[xi * point_stride + k]), plus bias[k] when bias is not
  // null: output (i, j) of channel k at out[(i * 4 + j) * channels + k].
  void (*output)(const float* m, int64_t point_stride, int64_t channels, const float* bias, float* out);
};

const WinogradTransforms& winograd_transforms_scalar();
const WinogradTransforms& winograd_transforms_avx2();
const WinogradTransforms& winograd_transforms_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const WinogradTransforms& winograd_transforms();

}  // namespace minidnn::cpu
