// The first-layer route's kernel (first_layer.h), written once over a SIMD
// vocabulary and instantiated by first_layer_<isa>.cpp with its register
// tile (anonymous namespace: see simd/README.md).
//
// The register tile: KK output channels x PV vectors of output pixels of
// one row (KK x PV accumulators). Per tap (c, r, s) it loads PV input
// vectors from the band (first_layer.h: a plain load at any stride),
// broadcasts KK weights and does KK x PV multiply-adds: PV + KK loads for
// KK x PV FMAs (avx512: 8 x 3, 11 loads for 24 FMAs, within the two load
// ports while the two FMA ports are busy). The tile is written straight
// into the NCHW output (pixels are its vector dimension), with bias as the
// accumulators' start and the activation applied in registers. The vectors
// of an output row are cut evenly into tiles of at most PV (7 vectors: 3,
// 2, 2), so that no tile is starved of accumulators; lanes past Q compute
// on the band's zeros and are not stored.
//
// Every output is one chain of multiply-adds over the taps in (c, r, s)
// order, whatever band or thread computes it: results are bit-identical for
// any thread count.
#pragma once

#include <cstdint>

#include "cpu/activation/activation_impl.h"
#include "cpu/conv/first_layer.h"
#include "cpu/simd/cache_line.h"

namespace {

using minidnn::cpu::ConvEpilogue;
using minidnn::cpu::ConvGeometry;
using minidnn::cpu::FirstLayerPlan;

// The band of output rows from p0, `out_rows` of them (first_layer.h).
// Stride 2 (ResNet's conv1) splits its rows by vector loads and a permute
// (Ops::load_stride2), W elements at a time.
template <class Ops>
void build_band(const FirstLayerPlan& plan, const ConvGeometry& g, const float* x, int64_t p0, int64_t out_rows,
                float* band) {
  const int64_t sw = g.stride_w, len = plan.phase_len;
  const int64_t in_rows = (out_rows - 1) * g.stride_h + (g.r - 1) * g.dil_h + 1;
  const int64_t ih0 = p0 * g.stride_h - g.pad_top;
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t ph = 0; ph < sw; ++ph) {
      float* phase = band + (c * sw + ph) * plan.band_in_rows * len;
      const int64_t begin = plan.phase_columns[2 * ph], end = plan.phase_columns[2 * ph + 1];
      const int64_t col0 = ph - g.pad_left;  // input column of element 0
      for (int64_t i = 0; i < in_rows; ++i) {
        // Zeros, then the input's elements over them, all in vectors (len
        // is whole vectors): a grouped layer's rows are short (28 floats at
        // ResNeXt's 28x28), and a memset, a memcpy and a memset a row took
        // a fifth of that layer's time on Zen 4.
        float* row = phase + i * len;
        for (int64_t m = 0; m < len; m += Ops::W) Ops::store(row + m, Ops::zero());
        const int64_t ih = ih0 + i;
        if (ih < 0 || ih >= g.h || begin == end) continue;
        const float* xrow = x + (c * g.h + ih) * g.w;
        int64_t m = begin;
        if (sw == 1) {
          for (; m + Ops::W <= end; m += Ops::W) Ops::store(row + m, Ops::load(xrow + m + col0));
          if (m < end) Ops::store_tail(row + m, Ops::load_tail(xrow + m + col0, end - m, 0.0f), end - m);
        } else if (sw == 2) {
          for (; m + Ops::W <= end; m += Ops::W) Ops::store(row + m, Ops::load_stride2(xrow + 2 * m + col0));
          for (; m < end; ++m) row[m] = xrow[2 * m + col0];
        } else {
          for (; m < end; ++m) row[m] = xrow[m * sw + col0];
        }
      }
    }
  }
}

// One register tile: output channels [0, channels) of the block (KK with
// weights at w, taps x KK) x PV vectors of pixels from `in` (the band at
// the tile's first pixel, tap offsets added), the last vector `last` lanes
// wide. y: output channel 0 of the block, at the tile's first pixel; plane:
// floats between output channels.
template <class Ops, int KK, int PV>
void output_tile(const float* in, const int64_t* tap_offset, int64_t taps, const float* w, const float* bias,
                 int64_t channels, int64_t last, const ConvEpilogue& ep, float* y, int64_t plane) {
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  V acc[KK][PV];
  for (int k = 0; k < KK; ++k) {
    const V start = Ops::set1(bias != nullptr && k < channels ? bias[k] : 0.0f);
    for (int v = 0; v < PV; ++v) acc[k][v] = start;
  }
  for (int64_t t = 0; t < taps; ++t) {
    const float* src = in + tap_offset[t];
    const float* wt = w + t * KK;
    V xv[PV];
    for (int v = 0; v < PV; ++v) xv[v] = Ops::load(src + v * W);
    for (int k = 0; k < KK; ++k) {
      const V wk = Ops::set1(wt[k]);
      for (int v = 0; v < PV; ++v) acc[k][v] = Ops::fmadd(wk, xv[v], acc[k][v]);
    }
  }
  const V alpha = Ops::set1(ep.alpha);
  for (int k = 0; k < KK; ++k) {
    if (k >= channels) break;
    float* yk = y + k * plane;
    for (int v = 0; v < PV; ++v) {
      const V out = ep.activate ? activate<Ops>(ep.activation, acc[k][v], alpha) : acc[k][v];
      if (v == PV - 1 && last < W) {
        Ops::store_tail(yk + v * W, out, last);
      } else {
        Ops::store(yk + v * W, out);
      }
    }
  }
}

// output_tile for a tile of `vectors` vectors (1 <= vectors <= PV).
template <class Ops, int KK, int PV>
void output_tile_of(int64_t vectors, const float* in, const int64_t* tap_offset, int64_t taps, const float* w,
                    const float* bias, int64_t channels, int64_t last, const ConvEpilogue& ep, float* y,
                    int64_t plane) {
  if constexpr (PV > 1) {
    if (vectors < PV) {
      return output_tile_of<Ops, KK, PV - 1>(vectors, in, tap_offset, taps, w, bias, channels, last, ep, y, plane);
    }
  }
  output_tile<Ops, KK, PV>(in, tap_offset, taps, w, bias, channels, last, ep, y, plane);
}

// FirstLayerKernels::rows with tiles of KK channels x at most PV vectors.
template <class Ops, int KK, int PV>
void first_layer_rows(const FirstLayerPlan& plan, const ConvGeometry& g, const float* x_img,
                      const float* next_planes, const ConvEpilogue& ep, int64_t p0, int64_t p1, float* band,
                      float* y_img) {
  constexpr int64_t W = Ops::W;
  build_band<Ops>(plan, g, x_img, p0, p1 - p0, band);
  const int64_t npix = g.p * g.q;
  const int64_t vectors = plan.vectors;
  const int64_t tiles = (vectors + PV - 1) / PV;
  const int64_t last_lanes = g.q - (vectors - 1) * W;
  // next_planes (the unit a thread takes next) into L2 a slice per output
  // row, so that the next band's copy reads them from cache: read when the
  // copy starts, they stalled it (on Zen 4 a grouped layer's copy took 30%
  // of its time, its loads most of it).
  const int64_t plane_floats = next_planes != nullptr ? g.c * g.h * g.w : 0;
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t f = plane_floats * p / g.p; f < plane_floats * (p + 1) / g.p; f += kCacheLineFloats) {
      __builtin_prefetch(next_planes + f, 0, 2);
    }
    const float* in_row = band + (p - p0) * g.stride_h * plan.phase_len;
    for (int64_t k0 = 0; k0 < g.k; k0 += KK) {
      const int64_t channels = g.k - k0 < KK ? g.k - k0 : KK;
      const float* w = plan.packed_weight + k0 * plan.taps;  // block k0 / KK
      const float* bias = ep.bias != nullptr ? ep.bias + k0 : nullptr;
      float* y = y_img + k0 * npix + p * g.q;
      for (int64_t i = 0; i < tiles; ++i) {
        const int64_t v0 = vectors * i / tiles, v1 = vectors * (i + 1) / tiles;
        output_tile_of<Ops, KK, PV>(v1 - v0, in_row + v0 * W, plan.tap_offset, plan.taps, w, bias, channels,
                                    v1 == vectors ? last_lanes : W, ep, y + v0 * W, npix);
      }
    }
  }
}

}  // namespace
