// conv2d_forward's Winograd route, F(4x4, 3x3): 3x3 stride-1 undilated
// convolutions with groups == 1 and enough channels (the rule and the
// algorithm are in conv_forward_winograd.cpp). Internal to csrc/cpu/conv
// (conv.h is the public interface).
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

struct WinogradTransforms {
  // The weights of `count` (<= `width`) consecutive output channels, each
  // `channels` filters of 3x3 floats (filter (k, c) at w + k * channels * 9 +
  // c * 9), transformed: point xi of filter (k, c) at
  // dst[xi * point_stride + c * width + k]; lanes k in [count, width) are
  // zero (`width` is a multiple of the SIMD width: a packed GEMM B panel).
  void (*weight)(const float* w, int64_t channels, int count, int width, float* dst, int64_t point_stride);

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
