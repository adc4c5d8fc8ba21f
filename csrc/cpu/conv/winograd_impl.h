// The Winograd F(4x4, 3x3) transforms of winograd.h written once over a
// SIMD vocabulary and instantiated by winograd_<isa>.cpp (anonymous
// namespace, simd/README.md).
//
// The matrices (Lavin and Gray, points 0, 1, -1, 2, -2 and infinity):
//
//   B^T = | 4  0 -5  0  1  0 |   G = | 1/4    0     0   |   A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |       | -1/6 -1/6  -1/6  |         | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |       | -1/6  1/6  -1/6  |         | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |       | 1/24  1/12  1/6  |         | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |       | 1/24 -1/12  1/6  |
//         | 0  4  0 -5  0  1 |       | 0      0     1   |
//
// Each 2-D transform is the 1-D one applied to the columns, then to the
// rows of the result; the 1-D ones share their common sums.
#pragma once

#include <cstdint>

#include "cpu/conv/winograd.h"

namespace {

// B^T d.
template <class Ops>
[[gnu::always_inline]] inline void winograd_input_1d(const typename Ops::V (&d)[6], typename Ops::V (&t)[6]) {
  using V = typename Ops::V;
  const V four = Ops::set1(4.0f), five = Ops::set1(5.0f), two = Ops::set1(2.0f);
  const V d3_minus_d1 = Ops::sub(d[3], d[1]), d4_minus_d2 = Ops::sub(d[4], d[2]);
  t[0] = Ops::fmadd(four, d[0], Ops::fnmadd(five, d[2], d[4]));
  t[1] = Ops::fnmadd(four, Ops::add(d[1], d[2]), Ops::add(d[3], d[4]));
  t[2] = Ops::fmadd(four, Ops::sub(d[1], d[2]), Ops::sub(d[4], d[3]));
  t[3] = Ops::fmadd(two, d3_minus_d1, d4_minus_d2);
  t[4] = Ops::fnmadd(two, d3_minus_d1, d4_minus_d2);
  t[5] = Ops::fmadd(four, d[1], Ops::fnmadd(five, d[3], d[5]));
}

// A^T m.
template <class Ops>
[[gnu::always_inline]] inline void winograd_output_1d(const typename Ops::V (&m)[6], typename Ops::V (&o)[4]) {
  using V = typename Ops::V;
  const V sum12 = Ops::add(m[1], m[2]), diff12 = Ops::sub(m[1], m[2]);
  const V sum34 = Ops::add(m[3], m[4]), diff34 = Ops::sub(m[3], m[4]);
  o[0] = Ops::add(Ops::add(m[0], sum12), sum34);
  o[1] = Ops::fmadd(Ops::set1(2.0f), diff34, diff12);
  o[2] = Ops::fmadd(Ops::set1(4.0f), sum34, sum12);
  o[3] = Ops::add(Ops::fmadd(Ops::set1(8.0f), diff34, diff12), m[5]);
}

// G g.
template <class Ops>
[[gnu::always_inline]] inline void winograd_weight_1d(const typename Ops::V (&g)[3], typename Ops::V (&u)[6]) {
  using V = typename Ops::V;
  const V outer = Ops::add(g[0], g[2]);
  const V quarter_sum = Ops::fmadd(Ops::set1(1.0f / 24.0f), g[0], Ops::mul(Ops::set1(1.0f / 6.0f), g[2]));
  const V twelfth = Ops::mul(Ops::set1(1.0f / 12.0f), g[1]);
  u[0] = Ops::mul(Ops::set1(0.25f), g[0]);
  u[1] = Ops::mul(Ops::set1(-1.0f / 6.0f), Ops::add(outer, g[1]));
  u[2] = Ops::mul(Ops::set1(-1.0f / 6.0f), Ops::sub(outer, g[1]));
  u[3] = Ops::add(quarter_sum, twelfth);
  u[4] = Ops::sub(quarter_sum, twelfth);
  u[5] = g[2];
}

template <class Ops>
void winograd_weight(const minidnn::cpu::WinogradFilters& filters, int64_t first, int64_t channels, int count, int width,
                     float* dst, int64_t point_stride) {
  using V = typename Ops::V;
  const float* w = filters.data + first * filters.out_stride;
  for (int k0 = 0; k0 < width; k0 += Ops::W) {
    const int lanes = count - k0 < 0 ? 0 : (count - k0 > Ops::W ? Ops::W : count - k0);
    for (int64_t c = 0; c < channels; ++c) {
      float* out = dst + c * width + k0;
      if (lanes == 0) {
        for (int xi = 0; xi < minidnn::cpu::kWinogradPoints; ++xi) Ops::store(out + xi * point_stride, Ops::zero());
        continue;
      }
      const float* src = w + k0 * filters.out_stride + c * filters.in_stride;
      V cols[6][3];  // G g, column s of the filter in cols[.][s]
      for (int s = 0; s < 3; ++s) {
        V g[3];
        for (int r = 0; r < 3; ++r) {
          const int tap = filters.rotated ? 8 - (r * 3 + s) : r * 3 + s;
          g[r] = Ops::gather_lanes(src + tap, filters.out_stride, 0, lanes, 0.0f);
        }
        V u[6];
        winograd_weight_1d<Ops>(g, u);
        for (int i = 0; i < 6; ++i) cols[i][s] = u[i];
      }
      for (int i = 0; i < 6; ++i) {
        V u[6];
        winograd_weight_1d<Ops>(cols[i], u);
        for (int j = 0; j < 6; ++j) Ops::store(out + (i * 6 + j) * point_stride, u[j]);
      }
    }
  }
}

// Ops extends the SIMD vocabulary with a gather at per-lane offsets
// (winograd_<isa>.cpp): Offsets holds the offsets of lanes [0, lanes),
// offsets_of(o, lanes) loads them, gather_at(p, idx, lanes) reads p[idx[l]]
// for those lanes and nothing else (zero in the others).
template <class Ops>
void winograd_input(const float* band, const int32_t* offsets, int tiles, int64_t band_plane, int64_t band_row,
                    int64_t channels, float* dst, int64_t channel_stride, int64_t point_stride) {
  using V = typename Ops::V;
  for (int l0 = 0; l0 < tiles; l0 += Ops::W) {
    const int lanes = tiles - l0 > Ops::W ? Ops::W : tiles - l0;
    const typename Ops::Offsets idx = Ops::offsets_of(offsets + l0, lanes);
    for (int64_t c = 0; c < channels; ++c) {
      const float* plane = band + c * band_plane;
      V rows[6][6];  // B^T d, row i in rows[i]
      for (int j = 0; j < 6; ++j) {
        V d[6];
        for (int i = 0; i < 6; ++i) d[i] = Ops::gather_at(plane + i * band_row + j, idx, lanes);
        V t[6];
        winograd_input_1d<Ops>(d, t);
        for (int i = 0; i < 6; ++i) rows[i][j] = t[i];
      }
      float* out = dst + c * channel_stride + l0;
      for (int i = 0; i < 6; ++i) {
        V v[6];
        winograd_input_1d<Ops>(rows[i], v);
        for (int j = 0; j < 6; ++j) {
          float* o = out + (i * 6 + j) * point_stride;
          if (lanes == Ops::W) {
            Ops::store(o, v[j]);
          } else {
            Ops::store_tail(o, v[j], lanes);
          }
        }
      }
    }
  }
}

template <class Ops>
void winograd_output(const float* m, int64_t point_stride, int64_t channels, const float* bias, float* out) {
  using V = typename Ops::V;
  for (int64_t k0 = 0; k0 < channels; k0 += Ops::W) {
    const int64_t lanes = channels - k0 > Ops::W ? Ops::W : channels - k0;
    V cols[4][6];  // A^T m, row i in cols[i]
    for (int j = 0; j < 6; ++j) {
      V v[6];
      for (int i = 0; i < 6; ++i) {
        const float* p = m + (i * 6 + j) * point_stride + k0;
        v[i] = lanes == Ops::W ? Ops::load(p) : Ops::load_tail(p, lanes, 0.0f);
      }
      V o[4];
      winograd_output_1d<Ops>(v, o);
      for (int i = 0; i < 4; ++i) cols[i][j] = o[i];
    }
    const V b = bias == nullptr ? Ops::zero()
                                : (lanes == Ops::W ? Ops::load(bias + k0) : Ops::load_tail(bias + k0, lanes, 0.0f));
    for (int i = 0; i < 4; ++i) {
      V o[4];
      winograd_output_1d<Ops>(cols[i], o);
      for (int j = 0; j < 4; ++j) {
        float* p = out + (i * 4 + j) * channels + k0;
        const V r = Ops::add(o[j], b);
        if (lanes == Ops::W) {
          Ops::store(p, r);
        } else {
          Ops::store_tail(p, r, lanes);
        }
      }
    }
  }
}

template <class Ops>
minidnn::cpu::WinogradTransforms make_winograd_transforms() {
  return {winograd_weight<Ops>, winograd_input<Ops>, winograd_output<Ops>};
}

}  // namespace
