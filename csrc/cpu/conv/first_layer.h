// conv2d_forward's route for few input channels and a large or strided
// kernel (the first layer of an image network: ResNet's 7x7 stride 2 on 3
// channels, AlexNet's 11x11 stride 4): a direct convolution that keeps the
// output channels of a block in registers and a run of output pixels of
// one row as the vector dimension; also grouped convolutions with few
// channels per group (ResNeXt), one group at a time. The rule that sends
// shapes here and the driver are in conv_forward_first_layer.cpp; the
// kernel table each ISA variant fills in (first_layer_<isa>.cpp) is below.
// Internal to csrc/cpu/conv (conv.h is the public interface).
#pragma once

#include <cstdint>

#include "cpu/conv/conv.h"
#include "cpu/conv/conv_forward_taps.h"

namespace minidnn::cpu {

// Whether conv2d_forward's rule takes this route for `g` (a shape with a
// non-empty output and reduction): decided by the shape alone.
bool conv_forward_first_layer_applies(const ConvGeometry& g);

// conv2d_forward for any geometry (a group at a time), with N, K, P x Q and
// C / groups x R x S all at least 1, the weight read as the tap route reads
// it (taps_weight_of for conv2d's; backward data's stride-1 phase reads the
// flipped kernel with its channel axes swapped), the output plain NCHW.
void conv2d_forward_first_layer(const ConvGeometry& g, const float* x, const TapsWeight& weight,
                                const ConvEpilogue& ep, float* y);

// What the driver prepares once per call for the kernels.
//
// The band. For a band of output rows the kernel copies the input rows they
// read, zero-padded, into a per-thread buffer split by column phase: phase
// ph of a padded row holds its columns ph, ph + stride_w, ph + 2 stride_w,
// ... (padded column j is input column j - pad_left). Tap (c, r, s) of
// output (p, q) reads padded column q stride_w + s dil_w, which is element
// q + (s dil_w) / stride_w of phase (s dil_w) % stride_w: consecutive
// outputs of a row read consecutive elements, so a vector of outputs reads
// a plain vector load whatever the stride. Layout: channel c, phase ph,
// band input row i at band[((c * stride_w + ph) * band_in_rows + i) *
// phase_len].
struct FirstLayerPlan {
  int64_t lanes;          // vector width of the kernels
  int64_t block_channels; // output channels a register tile holds
  int64_t vectors;        // vectors of one output row: ceil(Q / lanes)
  int64_t phase_len;      // floats of a phase row: vectors * lanes plus the taps' reach, in whole vectors (zeros past the input)
  int64_t band_rows;      // output rows of a band (at most)
  int64_t band_in_rows;   // padded input rows a band of band_rows output rows reads
  int64_t band_floats;    // C * stride_w * band_in_rows * phase_len
  int64_t taps;           // C * R * S, the reduction
  const int64_t* tap_offset;     // taps: where tap (c, r, s) of output (band row 0, column 0) reads in the band
  const int64_t* phase_columns;  // 2 per phase: its elements [begin, end) that lie inside the input's columns
  const float* packed_weight;    // ceil(K / block_channels) blocks of taps x block_channels (zero past K)
};

struct FirstLayerKernels {
  int64_t lanes;           // vector width
  int64_t block_channels;  // output channels of a register tile
  // Output rows [p0, p1) (p1 - p0 <= plan.band_rows) of one image: x_img
  // its (C, H, W) input, y_img its (K, P, Q) output; `band` holds
  // plan.band_floats. Every output of those rows is written. next_planes:
  // the (C, H, W) input that follows x_img in x (the next image's, or the
  // next group's), prefetched while these rows run; nullptr on the last.
  void (*rows)(const FirstLayerPlan& plan, const ConvGeometry& g, const float* x_img, const float* next_planes,
               const ConvEpilogue& ep, int64_t p0, int64_t p1, float* band, float* y_img);
};

const FirstLayerKernels& first_layer_kernels_scalar();
const FirstLayerKernels& first_layer_kernels_avx2();
const FirstLayerKernels& first_layer_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const FirstLayerKernels& first_layer_kernels();

}  // namespace minidnn::cpu
