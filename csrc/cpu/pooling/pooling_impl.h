// Pooling kernels, written once over a SIMD vocabulary and instantiated by
// pooling_<isa>.cpp (anonymous namespace: see simd/README.md).
//
// Forward passes go one output row at a time, OpenMP over the rows of all
// planes (planes x output rows, contiguous shares: each thread gets whole
// planes when there are many, rows of one plane when there are few). In a
// row, the outputs whose W window lies wholly in the input (the unpadded
// interior) go a vector of W adjacent outputs at a time, loaded with the
// window stride (contiguous for stride 1, deinterleaved for stride 2,
// gathered otherwise): no per-element branch. Outputs at the borders and the
// row's tail take the scalar loop over the window's in-range taps. Average
// pooling with stride-1 or adaptive windows along W, and adaptive max
// pooling, go in two separable passes instead (avg_forward_by_columns,
// adaptive_max_forward); so do windows of stride 1 or 2 along W with
// kernel 2-3 (phased_forward: the ResNet and VGG pools), whose taps come
// from registers.
// Backward passes go plane by plane, each plane owned by one thread (no
// races, no atomics on the data).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cpu/pooling/pooling.h"
#include "cpu/simd/store.h"
#include "runtime/scratch.h"
#include "runtime/threads.h"

namespace {

using minidnn::cpu::PoolAxis;
using minidnn::cpu::PoolGeometry;

// Elements (read plus written) below which a second thread costs more to
// wake than it saves.
constexpr int64_t kPoolGrain = int64_t{1} << 15;

// Max pooling records the winning tap of each lane as a float: exact below 2^24.
constexpr int64_t kMaxVectorTaps = int64_t{1} << 24;

constexpr float kNegInf = -__builtin_inff();

// Global average pooling's backward streams outputs of at least this many
// floats (bench/NOTES.md, pooling).
constexpr int64_t kGlobalStreamMinFloats = int64_t{1} << 20;

// Stride modes of the vector loads: 1, 2 (deinterleave), anything else (gather).
constexpr int kStrideGather = 0;

// f(std::integral_constant<int, mode>{}) with the stride mode of `stride`.
template <class F>
void with_stride_mode(int64_t stride, F&& f) {
  switch (stride) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    default: return f(std::integral_constant<int, kStrideGather>{});
  }
}

template <class Ops, int kStride>
typename Ops::V load_strided(const float* p, int64_t stride) {
  if constexpr (kStride == 1) {
    return Ops::load(p);
  } else if constexpr (kStride == 2) {
    return Ops::load_stride2(p);
  } else {
    return Ops::gather(p, stride);
  }
}

template <class Ops>
void fill_zero(float* y, int64_t n) {
  store_row<Ops>(y, n, [](int64_t, int64_t) { return Ops::zero(); });
}

// Sum of a[0, n) in W partial sums.
template <class Ops>
float sum_segment(const float* a, int64_t n) {
  typename Ops::V acc = Ops::zero(), acc2 = Ops::zero();
  int64_t i = 0;
  for (; i + 2 * Ops::W <= n; i += 2 * Ops::W) {
    acc = Ops::add(acc, Ops::load(a + i));
    acc2 = Ops::add(acc2, Ops::load(a + i + Ops::W));
  }
  if (i + Ops::W <= n) {
    acc = Ops::add(acc, Ops::load(a + i));
    i += Ops::W;
  }
  if (i < n) acc2 = Ops::add(acc2, Ops::load_tail(a + i, n - i, 0.0f));
  return Ops::reduce_add(Ops::add(acc, acc2));
}

// store_row without the masked store of the tail: whole vectors over
// [0, n rounded up to W), which the buffer y must have room for. A later
// load of what a masked store wrote waits for that store to leave the store
// buffer; from a whole-vector store it is forwarded.
template <class Ops, class Value>
void store_vectors(float* y, int64_t n, Value value) {
  for (int64_t i = 0; i < n; i += Ops::W) Ops::store(y + i, value(i, n - i < Ops::W ? n - i : int64_t{Ops::W}));
}

// Body(plane, row) for the output rows [begin, end) of the flat (plane,
// row) order.
template <class Body>
void for_rows(const PoolGeometry& g, int64_t begin, int64_t end, const Body& body) {
  if (begin >= end) return;
  int64_t plane = begin / g.h.out, p = begin % g.h.out;  // one division per share
  for (int64_t r = begin; r < end; ++r) {
    body(plane, p);
    if (++p == g.h.out) {
      p = 0;
      ++plane;
    }
  }
}

// Share(begin, end) for contiguous shares of the output rows of every
// plane, one per thread.
template <class Share>
void for_each_row_share(const PoolGeometry& g, const Share& share) {
  const int64_t rows = g.planes * g.h.out;
  const int64_t work = g.planes * (g.h.in * g.w.in + g.h.out * g.w.out);
  minidnn::parallel(minidnn::threads_for(work, kPoolGrain),
                    [&](int t, int nt) { share(rows * t / nt, rows * (t + 1) / nt); });
}

// Body(plane, row) for every output row of every plane, split into
// contiguous shares.
template <class Body>
void for_each_row(const PoolGeometry& g, const Body& body) {
  for_each_row_share(g, [&](int64_t begin, int64_t end) { for_rows(g, begin, end, body); });
}

// Share(begin, end) for contiguous shares of the planes, one per thread.
template <class Share>
void for_each_plane_share(int64_t planes, int64_t work, const Share& share) {
  minidnn::parallel(minidnn::threads_for(work, kPoolGrain),
                    [&](int t, int nt) { share(planes * t / nt, planes * (t + 1) / nt); });
}

// Body(plane) for every plane, split into contiguous shares.
template <class Body>
void for_each_plane(int64_t planes, int64_t work, const Body& body) {
  for_each_plane_share(planes, work, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) body(plane);
  });
}

// ------------------------------------------------------------------- max

// Output (p, q) of plane x: its maximum, and in *index its flat position.
inline float window_max(const PoolAxis& h, const PoolAxis& w, int64_t p, int64_t q, const float* x, int64_t* index) {
  float m = kNegInf;
  int64_t best = h.first[p] * w.in + w.first[q];
  for (int64_t th = 0; th < h.taps[p]; ++th) {
    const int64_t ih = h.first[p] + th * h.dilation;
    const float* row = x + ih * w.in;
    for (int64_t tw = 0; tw < w.taps[q]; ++tw) {
      const int64_t iw = w.first[q] + tw * w.dilation;
      const float v = row[iw];
      if (v > m || v != v) {
        m = v;
        best = ih * w.in + iw;
      }
    }
  }
  *index = best;
  return m;
}

// The lanes [lo, hi) of the vector of outputs q .. q + W - 1 whose tap at
// offset `off` (the input position of lane 0's tap) lies in [0, in); lanes
// past `out` are left out too.
template <class Ops, int kStride>
void tap_lanes(int64_t off, int64_t stride, int64_t in, int64_t lanes, int64_t* lo, int64_t* hi) {
  int64_t a, b;
  if constexpr (kStride == 1) {
    a = -off;
    b = in - off;
  } else if constexpr (kStride == 2) {
    a = off >= 0 ? 0 : (-off + 1) >> 1;
    b = off > in - 1 ? 0 : ((in - 1 - off) >> 1) + 1;
  } else {
    a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    b = off > in - 1 ? 0 : (in - 1 - off) / stride + 1;
  }
  if (a < 0) a = 0;
  if (b < 0) b = 0;
  if (b > lanes) b = lanes;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

// The vector of x[off + l * stride], l in [0, W): every lane in range
// (kEdge false), or only lanes [lo, hi) read and `fill` in the others.
template <class Ops, int kStride, bool kEdge>
typename Ops::V load_taps(const float* row, int64_t off, int64_t stride, int64_t in, int64_t lanes, float fill) {
  if constexpr (!kEdge) {
    return load_strided<Ops, kStride>(row + off, stride);
  } else {
    int64_t lo, hi;
    tap_lanes<Ops, kStride>(off, stride, in, lanes, &lo, &hi);
    // Masked lanes are never read: the address may lie outside the row.
    const float* p = row + off;
    if constexpr (kStride == 1) {
      return Ops::load_lanes(p, lo, hi, fill);
    } else if constexpr (kStride == 2) {
      return Ops::load_stride2_lanes(p, lo, hi, fill);
    } else {
      return Ops::gather_lanes(p, stride, lo, hi, fill);
    }
  }
}

// Outputs q .. q + kU * W - 1 of row p (the last vector holding `lanes`
// <= W): the taps of each lane in scan order, a lane's maximum replaced
// where gt_or_nan; padding reads as -inf, which never replaces. The winning
// tap is kept as a float (th * kw + jw; -1: none replaced, the window's
// first in-range position). kU vectors at once: independent dependency
// chains (one chain of 9 taps is latency-bound).
template <class Ops, int kStride, bool kIndices, bool kEdge, int kU>
void max_vector(const PoolGeometry& g, const float* x, float* y, int64_t* idx, int64_t p, int64_t q, int64_t lanes) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const int64_t kw = w.kernel, sw = w.stride, dw = w.dilation;
  const int64_t taps_h = h.taps[p], ih0 = h.first[p], dh = h.dilation;
  const int64_t origin = q * sw - w.pad;
  const int64_t step = int64_t{Ops::W} * sw;  // between the vectors of the group
  V m[kU], tap[kU];
  for (int u = 0; u < kU; ++u) {
    m[u] = Ops::set1(kNegInf);
    tap[u] = Ops::set1(-1.0f);
  }
  for (int64_t th = 0; th < taps_h; ++th) {
    const float* row = x + (ih0 + th * dh) * w.in;
    for (int64_t jw = 0; jw < kw; ++jw) {
      const V id = Ops::set1(static_cast<float>(th * kw + jw));
      for (int u = 0; u < kU; ++u) {
        const V v = load_taps<Ops, kStride, kEdge>(row, origin + u * step + jw * dw, sw, w.in, lanes, kNegInf);
        const typename Ops::M replace = Ops::gt_or_nan(v, m[u]);
        m[u] = Ops::select(replace, v, m[u]);
        if constexpr (kIndices) tap[u] = Ops::select(replace, id, tap[u]);
      }
    }
  }
  for (int u = 0; u < kU; ++u) {
    const int64_t qu = q + u * Ops::W;
    const int64_t n = u == kU - 1 ? lanes : int64_t{Ops::W};
    if (n == Ops::W) {
      Ops::store(y + qu, m[u]);
    } else {
      Ops::store_tail(y + qu, m[u], n);
    }
    if constexpr (kIndices) {
      float taps[Ops::W];
      Ops::store(taps, tap[u]);
      for (int64_t l = 0; l < n; ++l) {
        if (taps[l] < 0.0f) {
          idx[qu + l] = ih0 * w.in + w.first[qu + l];
        } else {
          const int64_t t = static_cast<int64_t>(taps[l]);
          const int64_t th = t / kw, jw = t - th * kw;
          idx[qu + l] = (ih0 + th * dh) * w.in + origin + u * step + l * sw + jw * dw;
        }
      }
    }
  }
}

template <class Ops, int kStride, bool kIndices>
void max_row(const PoolGeometry& g, const float* x, float* y, int64_t* idx, int64_t p) {
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const bool vector = w.regular && h.taps[p] > 0 && (!kIndices || h.taps[p] * w.kernel <= kMaxVectorTaps);
  if (!vector) {
    for (int64_t q = 0; q < w.out; ++q) {
      int64_t i = 0;
      y[q] = window_max(h, w, p, q, x, &i);
      if constexpr (kIndices) idx[q] = i;
    }
    return;
  }
  for (int64_t q = 0; q < w.out;) {
    const int64_t lanes = w.out - q < Ops::W ? w.out - q : Ops::W;
    if (q >= w.full_lo && q + 4 * Ops::W <= w.full_hi) {
      max_vector<Ops, kStride, kIndices, false, 4>(g, x, y, idx, p, q, Ops::W);
      q += 4 * Ops::W;
    } else if (q >= w.full_lo && q + 2 * Ops::W <= w.full_hi) {
      max_vector<Ops, kStride, kIndices, false, 2>(g, x, y, idx, p, q, Ops::W);
      q += 2 * Ops::W;
    } else {
      if (q >= w.full_lo && q + Ops::W <= w.full_hi) {
        max_vector<Ops, kStride, kIndices, false, 1>(g, x, y, idx, p, q, lanes);
      } else {
        max_vector<Ops, kStride, kIndices, true, 1>(g, x, y, idx, p, q, lanes);
      }
      q += Ops::W;
    }
  }
}

template <class Ops, int kStride, bool kIndices>
void max_forward_as(const PoolGeometry& g, const float* x, float* y, int64_t* indices) {
  const int64_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
  for_each_row(g, [&](int64_t plane, int64_t p) {
    const int64_t o = plane * out_plane + p * g.w.out;
    max_row<Ops, kStride, kIndices>(g, x + plane * in_plane, y + o, kIndices ? indices + o : nullptr, p);
  });
}

// The lane scans of adaptive rows (w.out <= W outputs over few columns):
// lanes[t][q] is the column of output q's tap t, or past(q) beyond its
// window (lanes past w.out: 0). Returns the most taps of a window.
template <class Ops, class Past>
int64_t window_tap_lanes(const PoolAxis& w, int32_t (*lanes)[Ops::W], Past past) {
  int64_t most = 0;
  for (int64_t q = 0; q < w.out; ++q) most = w.taps[q] > most ? w.taps[q] : most;
  for (int64_t t = 0; t < most; ++t) {
    for (int64_t q = 0; q < Ops::W; ++q) {
      lanes[t][q] = q >= w.out ? 0 : static_cast<int32_t>(t < w.taps[q] ? w.first[q] + t : past(q));
    }
  }
  return most;
}

// Adaptive max pooling in two separable passes per output row p, as the
// average (avg_forward_by_columns): the maximum of each column over the
// rows p's windows cover, with its row (vectorized along the row), then
// each output scans its columns' maxima. The result is that of PyTorch's
// row-major scan: a column's maximum comes from the first of its rows that
// holds it (the last, for NaN), and across the columns, left to right, a
// value replaces the maximum when greater, or equal and from an earlier
// row; a NaN replaces one that is not NaN, or a NaN from the same or an
// earlier row (Ops::scan_replaces).
//
// Rows of at most W columns pooled to at most W outputs (AlexNet's 13 -> 6
// on AVX-512) scan across the outputs' lanes instead: the column maxima
// stay in one vector, and tap t of every output is permuted into its lane.
// The scalar scan branches on the data and mispredicts about once an
// output, which took most of its time (bench/NOTES.md).
template <class Ops>
void adaptive_max_forward(const PoolGeometry& g, const float* x, float* y, int64_t* indices) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const int64_t in_plane = h.in * w.in, out_plane = h.out * w.out;
  const bool lane_scan = w.in <= Ops::W && w.out <= Ops::W;
  for_each_row_share(g, [&](int64_t begin, int64_t end) {
    if (begin >= end) return;
    // The maximum of columns [i, i + len) over the rows of output row p's
    // windows, and the row (from the windows' first) it came from.
    const auto column_maxima = [&](const float* rows, int64_t p, int64_t i, int64_t len, V* m, V* r) {
      *m = load_part<Ops>(rows, i, len, 0.0f);  // adaptive windows hold a row at least
      *r = Ops::zero();
      for (int64_t th = 1; th < h.taps[p]; ++th) {
        const V v = load_part<Ops>(rows + th * w.in, i, len, 0.0f);
        const typename Ops::M replace = Ops::gt_or_nan(v, *m);
        *m = Ops::select(replace, v, *m);
        *r = Ops::select(replace, Ops::set1(static_cast<float>(th)), *r);
      }
    };
    if (lane_scan) {
      // Past its window, an output's last column again, which leaves the
      // scan where it is.
      int32_t column_of[Ops::W][Ops::W];
      const int64_t scan_taps =
          window_tap_lanes<Ops>(w, column_of, [&](int64_t q) { return w.first[q] + w.taps[q] - 1; });
      for_rows(g, begin, end, [&](int64_t plane, int64_t p) {
        V cm, cr;
        column_maxima(x + plane * in_plane + h.first[p] * w.in, p, 0, w.in, &cm, &cr);
        V m = Ops::permute(cm, column_of[0]), r = Ops::permute(cr, column_of[0]), tap = Ops::zero();
        for (int64_t t = 1; t < scan_taps; ++t) {
          const V v = Ops::permute(cm, column_of[t]), vr = Ops::permute(cr, column_of[t]);
          const typename Ops::M replace = Ops::scan_replaces(v, vr, m, r);
          m = Ops::select(replace, v, m);
          r = Ops::select(replace, vr, r);
          tap = Ops::select(replace, Ops::set1(static_cast<float>(t)), tap);
        }
        const int64_t o = plane * out_plane + p * w.out;
        if (w.out == Ops::W) {
          Ops::store(y + o, m);
        } else {
          Ops::store_tail(y + o, m, w.out);
        }
        if (indices == nullptr) return;
        float rows_of[Ops::W], taps_of[Ops::W];
        Ops::store(rows_of, r);
        Ops::store(taps_of, tap);
        for (int64_t q = 0; q < w.out; ++q) {
          const int64_t tap = static_cast<int64_t>(taps_of[q]);
          const int64_t column = w.first[q] + (tap < w.taps[q] ? tap : w.taps[q] - 1);
          indices[o + q] = (h.first[p] + static_cast<int64_t>(rows_of[q])) * w.in + column;
        }
      });
      return;
    }
    // Whole vectors only (the row rounded up to W): the scalar scan below
    // reads what they store, which a masked store would hold up.
    const int64_t padded_in = (w.in + Ops::W - 1) / Ops::W * Ops::W;
    float* col_max = minidnn::thread_scratch(minidnn::ScratchSlot::pooling_row, 2 * padded_in);
    float* col_row = col_max + padded_in;  // the row of each, from the window's first, as a float
    for_rows(g, begin, end, [&](int64_t plane, int64_t p) {
      const float* rows = x + plane * in_plane + h.first[p] * w.in;
      for (int64_t i = 0; i < w.in; i += Ops::W) {
        V m, r;
        column_maxima(rows, p, i, w.in - i < Ops::W ? w.in - i : Ops::W, &m, &r);
        Ops::store(col_max + i, m);
        Ops::store(col_row + i, r);
      }
      const int64_t o = plane * out_plane + p * w.out;
      for (int64_t q = 0; q < w.out; ++q) {
        int64_t best = w.first[q];
        float m = col_max[best], r = col_row[best];
        for (int64_t j = best + 1; j < w.first[q] + w.taps[q]; ++j) {
          const float v = col_max[j], vr = col_row[j];
          if (v != v ? (m == m || vr >= r) : (v > m || (v == m && vr < r))) {
            m = v;
            r = vr;
            best = j;
          }
        }
        y[o + q] = m;
        if (indices != nullptr) indices[o + q] = (h.first[p] + static_cast<int64_t>(r)) * w.in + best;
      }
    });
  });
}

// --------------------------------------------------------------- average

inline float divisor_at(const PoolAxis& h, const PoolAxis& w, int64_t p, int64_t q, float divisor) {
  return divisor > 0.0f ? divisor : h.count[p] * w.count[q];
}

inline float window_sum(const PoolAxis& h, const PoolAxis& w, int64_t p, int64_t q, const float* x) {
  float s = 0.0f;
  for (int64_t th = 0; th < h.taps[p]; ++th) {
    const float* row = x + (h.first[p] + th * h.dilation) * w.in;
    for (int64_t tw = 0; tw < w.taps[q]; ++tw) s += row[w.first[q] + tw * w.dilation];
  }
  return s;
}

// The divisors of outputs q .. q + n - 1 of row p, n <= W (1 where the
// divisor is 0: that comes only with no tap in range, a sum of 0, so the
// output is 0 / 1).
template <class Ops>
typename Ops::V divisor_vector(const PoolAxis& h, const PoolAxis& w, int64_t p, int64_t q, int64_t n, float divisor) {
  if (divisor > 0.0f) return Ops::set1(divisor);
  return Ops::max(Ops::mul(Ops::set1(h.count[p]), load_part<Ops>(w.count, q, n, 1.0f)), Ops::set1(1.0f));
}

// Outputs q .. q + kU * W - 1 of row p (the last vector holding `lanes`):
// the sums of the in-range taps (padding reads as 0), over the divisors.
// kU independent chains, as max_vector.
template <class Ops, int kStride, bool kEdge, int kU>
void avg_vector(const PoolGeometry& g, const float* x, float* y, int64_t p, int64_t q, int64_t lanes, float divisor) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const int64_t kw = w.kernel, sw = w.stride, dw = w.dilation;
  const int64_t taps_h = h.taps[p], ih0 = h.first[p], dh = h.dilation;
  const int64_t origin = q * sw - w.pad;
  const int64_t step = int64_t{Ops::W} * sw;
  V s[kU];
  for (int u = 0; u < kU; ++u) s[u] = Ops::zero();
  for (int64_t th = 0; th < taps_h; ++th) {
    const float* row = x + (ih0 + th * dh) * w.in;
    for (int64_t jw = 0; jw < kw; ++jw) {
      for (int u = 0; u < kU; ++u) {
        s[u] = Ops::add(s[u], load_taps<Ops, kStride, kEdge>(row, origin + u * step + jw * dw, sw, w.in, lanes, 0.0f));
      }
    }
  }
  for (int u = 0; u < kU; ++u) {
    const int64_t qu = q + u * Ops::W;
    const int64_t n = u == kU - 1 ? lanes : int64_t{Ops::W};
    const V d = divisor_vector<Ops>(h, w, p, qu, n, divisor);
    if (n == Ops::W) {
      Ops::store(y + qu, Ops::div(s[u], d));
    } else {
      Ops::store_tail(y + qu, Ops::div(s[u], d), n);
    }
  }
}

template <class Ops, int kStride>
void avg_row(const PoolGeometry& g, const float* x, float* y, int64_t p, float divisor) {
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  if (h.taps[p] == 0) {
    for (int64_t q = 0; q < w.out; ++q) {
      const float d = divisor_at(h, w, p, q, divisor);
      const float s = window_sum(h, w, p, q, x);
      y[q] = d != 0.0f ? s / d : 0.0f;
    }
    return;
  }
  for (int64_t q = 0; q < w.out;) {
    const int64_t lanes = w.out - q < Ops::W ? w.out - q : Ops::W;
    if (q >= w.full_lo && q + 4 * Ops::W <= w.full_hi) {
      avg_vector<Ops, kStride, false, 4>(g, x, y, p, q, Ops::W, divisor);
      q += 4 * Ops::W;
    } else if (q >= w.full_lo && q + 2 * Ops::W <= w.full_hi) {
      avg_vector<Ops, kStride, false, 2>(g, x, y, p, q, Ops::W, divisor);
      q += 2 * Ops::W;
    } else {
      if (q >= w.full_lo && q + Ops::W <= w.full_hi) {
        avg_vector<Ops, kStride, false, 1>(g, x, y, p, q, lanes, divisor);
      } else {
        avg_vector<Ops, kStride, true, 1>(g, x, y, p, q, lanes, divisor);
      }
      q += Ops::W;
    }
  }
}

template <class Ops, int kStride>
void avg_forward_as(const PoolGeometry& g, const float* x, float* y, float divisor) {
  const int64_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
  for_each_row(g, [&](int64_t plane, int64_t p) {
    avg_row<Ops, kStride>(g, x + plane * in_plane, y + plane * out_plane + p * g.w.out, p, divisor);
  });
}

// Global average pooling: one contiguous sum per plane.
template <class Ops>
void global_avg_forward(const PoolGeometry& g, const float* x, float* y, float divisor) {
  const int64_t in_plane = g.h.in * g.w.in;
  const float d = divisor_at(g.h, g.w, 0, 0, divisor);
  for_each_plane(g.planes, g.planes * (in_plane + 1), [&](int64_t plane) {
    const float s = sum_segment<Ops>(x + plane * in_plane, in_plane);
    y[plane] = d != 0.0f ? s / d : 0.0f;
  });
}

// Average pooling in two separable passes per output row p, each
// vectorized along the row: the column sums of the input rows p's windows
// cover into a row buffer `cols` (cols[j] for input column j - pad;
// padding columns 0), then each output the sum of its window's entries of
// it. For stride-1 windows along W (which overlap in all but one tap) the
// second pass is kw vector adds: kh + kw adds an output rather than
// kh * kw, and no border case in either pass. For adaptive windows (of
// varying sizes) it is one segment sum an output, where summing each row
// of the window apart took kh.
template <class Ops>
void avg_forward_by_columns(const PoolGeometry& g, const float* x, float* y, float divisor) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const int64_t in_plane = h.in * w.in, out_plane = h.out * w.out;
  const int64_t pad = w.regular ? w.pad : 0;
  // The columns the windows cover, padding included.
  const int64_t span = w.regular ? w.out + w.kernel - 1 : w.in;
  const int64_t covered = w.in < span - pad ? w.in : span - pad;  // of them, input columns
  // The last vector of a regular row reads up to W - 1 entries past the span.
  const int64_t buffer = span + Ops::W;
  // Adaptive rows of fewer than W columns to at most W outputs sum each
  // window across the outputs' lanes, as adaptive_max_forward scans, the
  // column sums in one vector whose lanes past w.in hold 0: no store of the
  // column sums, no scalar loop over the outputs.
  const bool lane_sums = !w.regular && w.in < Ops::W && w.out <= Ops::W;
  for_each_row_share(g, [&](int64_t begin, int64_t end) {
    if (begin >= end) return;
    if (lane_sums) {
      int32_t column_of[Ops::W][Ops::W];  // past a window: column w.in, a 0
      const int64_t taps_w = window_tap_lanes<Ops>(w, column_of, [&](int64_t) { return w.in; });
      for_rows(g, begin, end, [&](int64_t plane, int64_t p) {
        const float* rows = x + plane * in_plane + h.first[p] * w.in;
        V cs = Ops::zero();
        for (int64_t th = 0; th < h.taps[p]; ++th) cs = Ops::add(cs, load_part<Ops>(rows + th * h.dilation * w.in, 0, w.in, 0.0f));
        V s = Ops::zero();
        for (int64_t t = 0; t < taps_w; ++t) s = Ops::add(s, Ops::permute(cs, column_of[t]));
        const V out = Ops::div(s, divisor_vector<Ops>(h, w, p, 0, w.out, divisor));
        float* yp = y + plane * out_plane + p * w.out;
        if (w.out == Ops::W) {
          Ops::store(yp, out);
        } else {
          Ops::store_tail(yp, out, w.out);
        }
      });
      return;
    }
    float* cols = minidnn::thread_scratch(minidnn::ScratchSlot::pooling_row, buffer);
    // Only [pad, pad + covered) is rewritten per row: the rest stays 0.
    fill_zero<Ops>(cols, buffer);
    for_rows(g, begin, end, [&](int64_t plane, int64_t p) {
      const float* rows = x + plane * in_plane + h.first[p] * w.in;
      const int64_t row_step = h.dilation * w.in, taps_h = h.taps[p];
      store_row<Ops>(cols + pad, covered, [&](int64_t i, int64_t len) {
        V s = Ops::zero();
        for (int64_t th = 0; th < taps_h; ++th) s = Ops::add(s, load_part<Ops>(rows + th * row_step, i, len, 0.0f));
        return s;
      });
      float* out = y + plane * out_plane + p * w.out;
      if (w.regular) {
        store_row<Ops>(out, w.out, [&](int64_t q, int64_t len) {
          V s = Ops::load(cols + q);
          for (int64_t j = 1; j < w.kernel; ++j) s = Ops::add(s, Ops::load(cols + q + j));
          return Ops::div(s, divisor_vector<Ops>(h, w, p, q, len, divisor));
        });
      } else {
        for (int64_t q = 0; q < w.out; ++q) {
          const float d = divisor_at(h, w, p, q, divisor);
          const float* seg = cols + w.first[q];
          float s = 0.0f;
          if (w.taps[q] < Ops::W) {
            // Scalar adds: cheaper than a masked load and a horizontal reduction.
            for (int64_t j = 0; j < w.taps[q]; ++j) s += seg[j];
          } else {
            s = sum_segment<Ops>(seg, w.taps[q]);
          }
          out[q] = d != 0.0f ? s / d : 0.0f;
        }
      }
    });
  });
}

// ------------------------------------------- separable windows (max, average)

// Max pooling without indices and average pooling over regular windows
// (h.dilation 1) go in two passes, as the Design allows: each input
// row a thread's share needs is reduced along W once, into a ring of row
// results (slot = input row mod kh), and each output row then reduces the
// ring rows of its window, a contiguous vector at a time. A 3x3/2 window
// then costs, per vector of outputs, 6 strided tap loads and 8 reductions
// (two new input rows per output row, the third shared with the output row
// above) where the direct form (max_vector, avg_vector) takes 9 and 9. The
// border vectors of a row (2 of 4 for a 56-wide row at 16 lanes) read their
// taps from a copy of the row's border columns padded with the reduction's
// identity (-inf, 0), so that no vector needs a masked load.
//
// Max reduces with Ops::max(v, m) = v > m ? v : m: PyTorch's replace rule
// (the first maximum wins, so a -0 before a +0 stays) for everything but
// NaN, in one instruction where gt_or_nan and a select take four. The rule
// picks the first maximum in scan order, and reducing each window row left
// to right, then the rows top down, is the same scan: the values are
// bit-identical to the direct form's. NaN breaks the one-instruction rule
// (PyTorch keeps the last NaN), so the W pass also sums every tap vector of
// a row; a NaN sum (a NaN tap, or infinities of both signs, the padding's
// -inf included) sends every output row whose window covers that input row
// to the direct form (max_row).
constexpr int64_t kSeparableMaxFloats = int64_t{1} << 20;  // ring and buffers, per thread

// Floats of the padded row buffer: its entry b is input column b - w.pad,
// and vector q0 (a multiple of W) reads entries (q0 + l) * stride + j *
// dilation for l < W, j < kernel.
inline int64_t padded_row_floats(const PoolAxis& w, int64_t ring_row) {
  return (ring_row - 1) * w.stride + (w.kernel - 1) * w.dilation + 1;
}

template <class Ops>
int64_t ring_row_floats(const PoolAxis& w) {
  return (w.out + Ops::W - 1) / Ops::W * Ops::W;
}

// Rows along H of the windows phased_forward takes, and its ring rows: a
// power of two of at least h.kernel.
constexpr int kMaxPhasedRowsH = 3;
inline int64_t phased_ring_slots(const PoolAxis& h) { return h.kernel > 2 ? 4 : 2; }

// Whether the separable passes take g: with separable_row's W pass, and a
// padded row, or with phased_forward's (no padded row).
template <class Ops>
bool separable_fits(const PoolGeometry& g, bool phased) {
  if (!g.h.regular || !g.w.regular || g.h.dilation != 1 || g.h.kernel < 2) return false;
  // Windows that share no input row (stride >= kernel along H, as 2x2/2)
  // gain nothing from the ring; with separable_row's W pass they lose:
  // measured 2 threads, 8x256x56x56, max 2x2/2 0.87-0.89 ms direct against
  // 1.19 ms in two passes, average 0.90-0.93 against 1.03-1.04.
  if (!phased && g.h.stride >= g.h.kernel) return false;
  const int64_t ring_row = ring_row_floats<Ops>(g.w);
  const int64_t floats = phased ? (phased_ring_slots(g.h) + 1) * ring_row
                                 : padded_row_floats(g.w, ring_row) + (g.h.kernel + 2) * ring_row;
  return floats <= kSeparableMaxFloats;
}

template <class Ops, bool kMax>
typename Ops::V reduce_pair(typename Ops::V acc, typename Ops::V next) {
  if constexpr (kMax) {
    return Ops::max(next, acc);  // next replaces acc only where greater (NaN aside, see above)
  } else {
    return Ops::add(acc, next);
  }
}

// The W pass of one input row `src`: slot[q] = the row's reduction over
// output q's window, for q in [0, ring_row). Vectors [direct_lo, direct_hi)
// read their taps straight from src; the others from `padded` (entry b is
// column b - pad), of which this copies the columns they read. Max adds
// every tap vector into *probe (NaN where a tap was NaN): one add a vector
// on the chain through the row, the others off it.
template <class Ops, int kStride, bool kMax, int kKernel>
void separable_row(const float* src, float* padded, float* slot, const PoolAxis& w, int64_t ring_row,
                   int64_t covered, int64_t direct_lo, int64_t direct_hi, typename Ops::V* probe) {
  using V = typename Ops::V;
  const int64_t sw = w.stride, kw = kKernel > 0 ? kKernel : w.kernel, dw = w.dilation, pad = w.pad;
  const int64_t step = int64_t{Ops::W} * sw;  // input columns between vectors
  // Columns the border vectors read: [0, head) and [tail, covered).
  int64_t head = direct_lo * step - sw + (kw - 1) * dw + 1 - pad;
  if (head > covered) head = covered;
  int64_t tail = direct_hi * step - pad;
  if (tail < 0) tail = 0;
  if (head > 0) {
    store_row<Ops>(padded + pad, head, [&](int64_t i, int64_t len) { return load_part<Ops>(src, i, len, 0.0f); });
  }
  if (tail < covered) {
    store_row<Ops>(padded + pad + tail, covered - tail,
                   [&](int64_t i, int64_t len) { return load_part<Ops>(src + tail, i, len, 0.0f); });
  }
  V sum = *probe;
  for (int64_t v = 0; v * Ops::W < ring_row; ++v) {
    const float* taps = v >= direct_lo && v < direct_hi ? src - pad + v * step : padded + v * step;
    V acc = load_strided<Ops, kStride>(taps, sw), taps_sum = acc;
    for (int64_t j = 1; j < kw; ++j) {
      const V t = load_strided<Ops, kStride>(taps + j * dw, sw);
      if constexpr (kMax) taps_sum = Ops::add(taps_sum, t);
      acc = reduce_pair<Ops, kMax>(acc, t);
    }
    if constexpr (kMax) sum = Ops::add(sum, taps_sum);
    Ops::store(slot + v * Ops::W, acc);
  }
  *probe = sum;
}

// The H pass of one output row: out[q] = the reduction of the `taps` ring
// rows from `first_slot` on (wrapping at `slots`), times recip[q] for the
// average.
template <class Ops, bool kMax, int kTaps>
void separable_column(const float* ring, int64_t ring_row, int64_t slots, int64_t first_slot, int64_t runtime_taps,
                      const float* recip, float* out, int64_t n) {
  using V = typename Ops::V;
  const int64_t taps = kTaps > 0 ? kTaps : runtime_taps;
  store_row<Ops>(out, n, [&](int64_t q, int64_t len) {
    int64_t s = first_slot;
    V acc = Ops::load(ring + s * ring_row + q);
    for (int64_t t = 1; t < taps; ++t) {
      if (++s == slots) s = 0;
      acc = reduce_pair<Ops, kMax>(acc, Ops::load(ring + s * ring_row + q));
    }
    if constexpr (kMax) {
      return acc;
    } else {
      return Ops::mul(acc, load_part<Ops>(recip, q, len, 0.0f));
    }
  });
}

// recip[q] = 1 / the divisor of output (p, q), or 0 where that is 0 (only
// with no tap in range, a sum of 0); whole vectors over w.out rounded up.
template <class Ops>
void reciprocal_divisors(const PoolGeometry& g, int64_t p, float divisor, float* recip) {
  using V = typename Ops::V;
  store_vectors<Ops>(recip, g.w.out, [&](int64_t q, int64_t len) {
    const V d = divisor > 0.0f ? Ops::set1(divisor)
                               : Ops::mul(Ops::set1(g.h.count[p]), load_part<Ops>(g.w.count, q, len, 0.0f));
    return Ops::select(Ops::gt(d, Ops::zero()), Ops::div(Ops::set1(1.0f), d), Ops::zero());
  });
}

template <class Ops, int kStride, bool kMax>
void separable_forward(const PoolGeometry& g, const float* x, float* y, float divisor) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const int64_t in_plane = h.in * w.in, out_plane = h.out * w.out, slots = h.kernel;
  const int64_t ring_row = ring_row_floats<Ops>(w);
  // Vectors whose taps all lie in the input: v * step >= pad and
  // (v * W + W - 1) * stride + (kernel - 1) * dilation - pad <= in - 1.
  const int64_t step = int64_t{Ops::W} * w.stride;
  const int64_t vectors = ring_row / Ops::W;
  const int64_t direct_lo = (w.pad + step - 1) / step;
  const int64_t last_reach = (Ops::W - 1) * w.stride + (w.kernel - 1) * w.dilation - w.pad;  // of vector 0
  int64_t direct_hi = w.in - 1 - last_reach >= 0 ? (w.in - 1 - last_reach) / step + 1 : 0;
  if (direct_hi > vectors) direct_hi = vectors;
  if (direct_hi < direct_lo) direct_hi = direct_lo;
  // The common kernels of 2 and 3 taps along W unrolled.
  const auto row_pass = w.kernel == 3 ? separable_row<Ops, kStride, kMax, 3>
                        : w.kernel == 2 ? separable_row<Ops, kStride, kMax, 2> : separable_row<Ops, kStride, kMax, 0>;
  const int64_t padded_floats = padded_row_floats(w, ring_row);
  const int64_t covered = w.in < padded_floats - w.pad ? w.in : padded_floats - w.pad;  // input columns read
  for_each_row_share(g, [&](int64_t begin, int64_t end) {
    if (begin >= end) return;
    // 64-byte alignment (thread_scratch's) for the ring and for the copy's stores at padded + w.pad.
    const int64_t lead = (16 - w.pad % 16) % 16, ring_at = (lead + padded_floats + 15) / 16 * 16;
    float* base = minidnn::thread_scratch(minidnn::ScratchSlot::pooling_row, ring_at + (slots + 1) * ring_row);
    float* padded = base + lead;
    float* ring = base + ring_at;
    float* recip = ring + slots * ring_row;  // average: 1 / divisor of each output of the row
    // Only input columns are rewritten per row: the rest stays the identity.
    store_row<Ops>(padded, padded_floats, [](int64_t, int64_t) { return Ops::set1(kMax ? kNegInf : 0.0f); });
    int64_t plane_now = -1;
    int64_t next = 0;       // of plane_now's input rows, those below `next` that a window needs are in the ring
    int64_t nan_row = -1;   // the last of them whose probe was NaN
    float recip_key = -1.0f;  // what recip holds: h.count of its row, or -2 for divisor_override
    for_rows(g, begin, end, [&](int64_t plane, int64_t p) {
      const float* xp = x + plane * in_plane;
      float* out = y + plane * out_plane + p * w.out;
      if (plane != plane_now) {
        plane_now = plane;
        next = 0;
        nan_row = -1;
      }
      const int64_t first = h.first[p], taps = h.taps[p];
      if (taps == 0) {  // average only (max refuses such windows): a sum of nothing
        fill_zero<Ops>(out, w.out);
        return;
      }
      for (int64_t r = next > first ? next : first; r < first + taps; ++r) {
        V probe = Ops::zero();
        row_pass(xp + r * w.in, padded, ring + (r % slots) * ring_row, w, ring_row, covered, direct_lo, direct_hi,
                 &probe);
        if (kMax && Ops::any(Ops::gt_or_nan(probe, probe))) nan_row = r;
      }
      if (first + taps > next) next = first + taps;
      if constexpr (kMax) {
        if (nan_row >= first) return max_row<Ops, kStride, false>(g, xp, out, nullptr, p);
      } else {
        const float key = divisor > 0.0f ? -2.0f : h.count[p];
        if (key != recip_key) {
          recip_key = key;
          reciprocal_divisors<Ops>(g, p, divisor, recip);
        }
      }
      const auto column_pass = taps == 3 ? separable_column<Ops, kMax, 3>
                               : taps == 2 ? separable_column<Ops, kMax, 2> : separable_column<Ops, kMax, 0>;
      column_pass(ring, ring_row, slots, first % slots, taps, recip, out, w.out);
    });
  });
}

// The W pass of windows of kKernel taps with stride kStride (1 or 2) and
// left padding kPad along W, no dilation, for a row of `in` columns whose
// outputs fill `blocks` vectors: each block of W outputs loads its input
// columns [kStride * W * b, kStride * W * (b + 1)) once, as kStride phase
// vectors (phase r: the columns r mod kStride, i.e. the row itself for
// stride 1, its even and odd columns for stride 2), with the reduction's
// identity past the row. Tap j of output q, column kStride * q - kPad + j,
// is then phase (j - kPad) mod kStride shifted by floor((j - kPad) /
// kStride) lanes, which fits() keeps to -1, 0 or 1: the previous block's
// last lane shifted in, or the next block's first (Ops::shift_in,
// shift_next), the previous block of block 0 being padding. So no border
// case, no copy of border columns and no masked load of a recent store
// (separable_row's padded copy: a load waits for a masked store before it,
// or one that covers only part of it, to leave the store buffer), and for
// stride 2 one deinterleave a block where separable_row's strided loads
// take one a tap (bench/NOTES.md, "Pooling at the memory speed").
template <int Stride, int Kernel, int Pad>
struct PhasedTaps {
  static constexpr int kStride = Stride, kKernel = Kernel, kPad = Pad;
  static constexpr int phase(int j) { return ((j - kPad) % kStride + kStride) % kStride; }
  static constexpr int shift(int j) { return (j - kPad - phase(j)) / kStride; }
  static constexpr bool fits() {
    for (int j = 0; j < kKernel; ++j) {
      if (shift(j) < -1 || shift(j) > 1) return false;
    }
    return true;
  }
  static constexpr bool looks_ahead() { return shift(kKernel - 1) > 0; }
};

// The phase vectors of block b of a row of `in` columns (the reduction's
// identity `fill` past the row); adds them into *probe when kProbe.
template <class Ops, int kStride, bool kProbe>
[[gnu::always_inline]] inline void load_phases(const float* src, int64_t b, int64_t in, float fill,
                                               typename Ops::V* phases, typename Ops::V* probe) {
  constexpr int64_t kSpan = int64_t{kStride} * Ops::W;  // input columns of a block
  const int64_t col = b * kSpan, n = in - col;
  if (n <= 0) {
    for (int r = 0; r < kStride; ++r) phases[r] = Ops::set1(fill);
    return;
  }
  if constexpr (kStride == 1) {
    phases[0] = n >= kSpan ? Ops::load(src + col) : Ops::load_tail(src + col, n, fill);
  } else if (n >= kSpan) {
    Ops::deinterleave(src + col, &phases[0], &phases[1]);
  } else {
    Ops::deinterleave_part(src + col, n, fill, &phases[0], &phases[1]);
  }
  if constexpr (kProbe) {
    for (int r = 0; r < kStride; ++r) *probe = Ops::add(*probe, phases[r]);
  }
}

// One output row of phased windows, a block of W outputs at a time: the W
// pass of its kNew input rows not yet in the ring (src[i]) and the H pass
// over its n_old ring rows (old[]) then those, top down; times recip for
// the average. New rows from keep_from on are stored into ring rows
// fresh[i] for the output rows below. Max adds each new row's phases into
// probes[i]. The loops over the new rows and taps are unrolled so that the
// phases stay in registers. kOld and kKeepFrom, when not -1, fix n_old and
// keep_from at compile time (phased_steady_rows).
template <class Ops, class Taps, bool kMax, int kNew, int kOld = -1, int kKeepFrom = -1>
[[gnu::always_inline]] inline void phased_output_row(const float* const* src, float* const* fresh,
                                                     int runtime_keep_from, const float* const* old, int runtime_n_old,
                                                     int64_t in, int64_t blocks, int64_t out_n, const float* recip,
                                                     float* out, typename Ops::V* probes) {
  using V = typename Ops::V;
  const int n_old = kOld >= 0 ? kOld : runtime_n_old, keep_from = kKeepFrom >= 0 ? kKeepFrom : runtime_keep_from;
  constexpr int kS = Taps::kStride;
  constexpr int kRows = kNew > 0 ? kNew : 1;
  constexpr float kFill = kMax ? kNegInf : 0.0f;
  V prev[kRows][kS], cur[kRows][kS], next[kRows][kS], probe[kRows];
#pragma GCC unroll 4
  for (int i = 0; i < kNew; ++i) {
    probe[i] = Ops::zero();
#pragma GCC unroll 2
    for (int r = 0; r < kS; ++r) prev[i][r] = Ops::set1(kFill);
    if constexpr (Taps::looks_ahead()) load_phases<Ops, kS, kMax>(src[i], 0, in, kFill, next[i], &probe[i]);
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t at = b * Ops::W;
    V acc = n_old > 0 ? Ops::load(old[0] + at) : Ops::zero();
    for (int o = 1; o < n_old; ++o) acc = reduce_pair<Ops, kMax>(acc, Ops::load(old[o] + at));
#pragma GCC unroll 4
    for (int i = 0; i < kNew; ++i) {
      if constexpr (Taps::looks_ahead()) {
#pragma GCC unroll 2
        for (int r = 0; r < kS; ++r) cur[i][r] = next[i][r];
        load_phases<Ops, kS, kMax>(src[i], b + 1, in, kFill, next[i], &probe[i]);
      } else {
        load_phases<Ops, kS, kMax>(src[i], b, in, kFill, cur[i], &probe[i]);
      }
      V row = Ops::zero();
#pragma GCC unroll 4
      for (int j = 0; j < Taps::kKernel; ++j) {
        const int r = Taps::phase(j);
        const V tap = Taps::shift(j) < 0   ? Ops::shift_in(prev[i][r], cur[i][r])
                      : Taps::shift(j) > 0 ? Ops::shift_next(cur[i][r], next[i][r])
                                           : cur[i][r];
        row = j == 0 ? tap : reduce_pair<Ops, kMax>(row, tap);
      }
      if (i >= keep_from) Ops::store(fresh[i] + at, row);
      acc = i == 0 && n_old == 0 ? row : reduce_pair<Ops, kMax>(acc, row);
#pragma GCC unroll 2
      for (int r = 0; r < kS; ++r) prev[i][r] = cur[i][r];
    }
    if constexpr (!kMax) acc = Ops::mul(acc, Ops::load(recip + at));
    if (at + Ops::W <= out_n) {
      Ops::store(out + at, acc);
    } else {
      Ops::store_tail(out + at, acc, out_n - at);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kNew; ++i) probes[i] = probe[i];
}

// Output rows [p, p_end) of one plane (xp, yp), whose windows along H all
// have kOld rows in the ring and kNew rows below them (the interior of a
// plane, every row of the window in the input), each the stride further
// down: phased_output_row with no per-row decision left but the NaN probe.
// Short rows (56 outputs, 4 blocks) spent as long on those decisions as on
// their blocks. Returns the last NaN row, from *nan_row on.
template <class Ops, class Taps, bool kMax, int kOld, int kNew>
int64_t phased_steady_rows(const PoolGeometry& g, const float* xp, float* yp, float* ring, int64_t slots,
                           int64_t ring_row, int64_t blocks, const float* recip, int64_t p, int64_t p_end,
                           int64_t nan_row) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  // The new rows that the next output row reads again: from the stride on.
  constexpr int kKeepFrom = kOld == 0 ? kNew : (kNew > kOld ? kNew - kOld : 0);
  for (; p < p_end; ++p) {
    const int64_t first = h.first[p];
    const float* old[kOld > 0 ? kOld : 1];
    const float* src[kNew];
    float* fresh[kNew];
    for (int o = 0; o < kOld; ++o) old[o] = ring + ((first + o) & (slots - 1)) * ring_row;
    for (int i = 0; i < kNew; ++i) {
      src[i] = xp + (first + kOld + i) * w.in;
      fresh[i] = ring + ((first + kOld + i) & (slots - 1)) * ring_row;
    }
    V probes[kNew];
    float* out = yp + p * w.out;
    phased_output_row<Ops, Taps, kMax, kNew, kOld, kKeepFrom>(src, fresh, 0, old, 0, w.in, blocks, w.out, recip, out,
                                                              probes);
    if constexpr (kMax) {
      for (int i = 0; i < kNew; ++i) {
        if (Ops::any(Ops::gt_or_nan(probes[i], probes[i]))) nan_row = first + kOld + i;
      }
      if (nan_row >= first) {
        with_stride_mode(w.stride,
                         [&](auto mode) { max_row<Ops, decltype(mode)::value, false>(g, xp, out, nullptr, p); });
      }
    }
  }
  return nan_row;
}

// Windows along W that phased_output_row takes: f(PhasedTaps<...>{}) for
// those, or false without calling f.
template <class F>
bool with_phased_taps(const PoolAxis& w, F&& f) {
  if (!w.regular || w.dilation != 1 || w.stride > 2 || w.kernel > 3 || w.pad > 2) return false;
  const auto key = [](int64_t stride, int64_t kernel, int64_t pad) { return (stride * 8 + kernel) * 8 + pad; };
  switch (key(w.stride, w.kernel, w.pad)) {
    case key(1, 2, 0): return f(PhasedTaps<1, 2, 0>{}), true;
    case key(1, 3, 1): return f(PhasedTaps<1, 3, 1>{}), true;
    case key(2, 2, 0): return f(PhasedTaps<2, 2, 0>{}), true;
    case key(2, 3, 0): return f(PhasedTaps<2, 3, 0>{}), true;
    case key(2, 3, 1): return f(PhasedTaps<2, 3, 1>{}), true;
    default: return false;
  }
}

// The separable passes of phased windows along W and regular windows of at
// most kMaxPhasedRowsH rows along H (no dilation): output rows in the flat
// (plane, row) order, each input row's W result kept in a ring of
// phased_ring_slots rows (slot = row & (slots - 1), no division) for the
// output rows below that share it. Max sends the output rows over a row
// whose probe is NaN to the direct form, as separable_forward.
template <class Ops, bool kMax>
bool phased_forward(const PoolGeometry& g, const float* x, float* y, float divisor) {
  using V = typename Ops::V;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  if (h.kernel > kMaxPhasedRowsH || !separable_fits<Ops>(g, true)) return false;
  return with_phased_taps(w, [&](auto taps) {
    using Taps = decltype(taps);
    const int64_t in_plane = h.in * w.in, out_plane = h.out * w.out, slots = phased_ring_slots(h);
    const int64_t ring_row = ring_row_floats<Ops>(w), blocks = ring_row / Ops::W;
    for_each_row_share(g, [&](int64_t begin, int64_t end) {
      if (begin >= end) return;
      float* ring = minidnn::thread_scratch(minidnn::ScratchSlot::pooling_row, (slots + 1) * ring_row);
      float* recip = ring + slots * ring_row;  // average: 1 / divisor of each output of the row
      int64_t plane_now = -1;
      int64_t next = 0;       // of plane_now's input rows, those below `next` that a window needs are in the ring
      int64_t nan_row = -1;   // the last of them whose probe was NaN
      float recip_key = -1.0f;  // what recip holds: h.count of its row, or -2 for divisor_override
      // Rows of a window along H that the window above holds too.
      const int steady_old = h.stride < h.kernel ? static_cast<int>(h.kernel - h.stride) : 0;
      // The rows of the share in one loop here (for_rows calls its body per
      // row, which cost as much as the W pass of a 56-wide row).
      int64_t plane = begin / h.out, p = begin % h.out;
      for (int64_t flat = begin; flat < end; ++flat, ++p) {
        if (p == h.out) {
          p = 0;
          ++plane;
        }
        const float* xp = x + plane * in_plane;
        float* out = y + plane * out_plane + p * w.out;
        if (plane != plane_now) {  // a new plane: nothing of it in the ring
          plane_now = plane, next = 0, nan_row = -1;
        }
        const int64_t first = h.first[p], taps = h.taps[p];
        if (taps == 0) {  // average only: a sum of nothing
          fill_zero<Ops>(out, w.out);
          continue;
        }
        if constexpr (!kMax) {
          const float key = divisor > 0.0f ? -2.0f : h.count[p];
          if (key != recip_key) {
            recip_key = key;
            reciprocal_divisors<Ops>(g, p, divisor, recip);
          }
        }
        const int64_t new_from = next > first ? next : first;
        const int n_old = static_cast<int>(new_from - first), n_new = static_cast<int>(first + taps - new_from);
        if (p >= h.full_lo && p < h.full_hi && n_old == steady_old) {
          // The interior rows of the plane in the share, in one run.
          const int64_t p_end = h.full_hi < p + (end - flat) ? h.full_hi : p + (end - flat);
          const auto run = [&](auto rows_old, auto rows_new) {
            nan_row = phased_steady_rows<Ops, Taps, kMax, decltype(rows_old)::value, decltype(rows_new)::value>(
                g, xp, y + plane * out_plane, ring, slots, ring_row, blocks, recip, p, p_end, nan_row);
            return true;
          };
          using Zero = std::integral_constant<int, 0>;
          using One = std::integral_constant<int, 1>;
          using Two = std::integral_constant<int, 2>;
          using Three = std::integral_constant<int, 3>;
          const bool ran = steady_old == 0   ? (n_new == 2 ? run(Zero{}, Two{}) : n_new == 3 && run(Zero{}, Three{}))
                           : steady_old == 1 ? (n_new == 1 ? run(One{}, One{}) : n_new == 2 && run(One{}, Two{}))
                                             : n_new == 1 && run(Two{}, One{});
          if (ran) {
            flat += p_end - 1 - p;
            p = p_end - 1;
            next = h.first[p] + h.taps[p];
            continue;
          }
        }
        const float* old[kMaxPhasedRowsH];
        const float* src[kMaxPhasedRowsH];
        float* fresh[kMaxPhasedRowsH];
        for (int o = 0; o < n_old; ++o) old[o] = ring + ((first + o) & (slots - 1)) * ring_row;
        for (int i = 0; i < n_new; ++i) {
          src[i] = xp + (new_from + i) * w.in;
          fresh[i] = ring + ((new_from + i) & (slots - 1)) * ring_row;
        }
        // The new rows that later output rows of the plane read again.
        int keep_from = n_new;
        if (p + 1 < h.out && h.taps[p + 1] > 0 && h.first[p + 1] < first + taps) {
          keep_from = h.first[p + 1] > new_from ? static_cast<int>(h.first[p + 1] - new_from) : 0;
        }
        V probes[kMaxPhasedRowsH];
        const auto row = [&](auto rows) {
          phased_output_row<Ops, Taps, kMax, decltype(rows)::value>(src, fresh, keep_from, old, n_old, w.in, blocks,
                                                                    w.out, recip, out, probes);
        };
        switch (n_new) {
          case 0: row(std::integral_constant<int, 0>{}); break;
          case 1: row(std::integral_constant<int, 1>{}); break;
          case 2: row(std::integral_constant<int, 2>{}); break;
          default: row(std::integral_constant<int, 3>{}); break;
        }
        if (first + taps > next) next = first + taps;
        if constexpr (kMax) {
          for (int i = 0; i < n_new; ++i) {
            if (Ops::any(Ops::gt_or_nan(probes[i], probes[i]))) nan_row = new_from + i;
          }
          if (nan_row >= first) {
            with_stride_mode(w.stride,
                             [&](auto mode) { max_row<Ops, decltype(mode)::value, false>(g, xp, out, nullptr, p); });
          }
        }
      }
    });
  });
}

template <class Ops>
void pool_max_forward(const PoolGeometry& g, const float* x, float* y, int64_t* indices) {
  // Rows are kept as floats: exact below 2^24.
  if (!g.w.regular && g.h.kernel <= kMaxVectorTaps) return adaptive_max_forward<Ops>(g, x, y, indices);
  with_stride_mode(g.w.stride, [&](auto mode) {
    constexpr int kMode = decltype(mode)::value;
    if (indices != nullptr) return max_forward_as<Ops, kMode, true>(g, x, y, indices);
    if (phased_forward<Ops, true>(g, x, y, 0.0f)) return;
    if (separable_fits<Ops>(g, false)) return separable_forward<Ops, kMode, true>(g, x, y, 0.0f);
    max_forward_as<Ops, kMode, false>(g, x, y, nullptr);
  });
}

template <class Ops>
void pool_avg_forward(const PoolGeometry& g, const float* x, float* y, float divisor) {
  if (g.h.out == 1 && g.w.out == 1 && g.h.dilation == 1 && g.w.dilation == 1 && g.h.taps[0] == g.h.in &&
      g.w.taps[0] == g.w.in) {
    return global_avg_forward<Ops>(g, x, y, divisor);
  }
  if (phased_forward<Ops, false>(g, x, y, divisor)) return;
  if (!g.w.regular || (g.w.stride == 1 && g.w.dilation == 1 && g.w.kernel > 1)) {
    return avg_forward_by_columns<Ops>(g, x, y, divisor);
  }
  with_stride_mode(g.w.stride, [&](auto mode) {
    constexpr int kMode = decltype(mode)::value;
    if (separable_fits<Ops>(g, false)) return separable_forward<Ops, kMode, false>(g, x, y, divisor);
    avg_forward_as<Ops, kMode>(g, x, y, divisor);
  });
}

// Global average pooling's backward: each plane filled with its share
// grad_y / divisor. Planes (7 x 7 = 49 floats in ResNet) do not start on
// vector boundaries, so a share's planes are written as one flat row
// instead, a vector that straddles two planes blending their shares (planes
// of at least W floats: a vector meets at most two); memory-sized outputs
// go through streaming stores (write_row).
template <class Ops>
void global_avg_backward(const PoolGeometry& g, const float* grad_y, float* grad_x, float divisor) {
  using V = typename Ops::V;
  static constexpr float kLanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const int64_t in_plane = g.h.in * g.w.in;
  const float d = divisor_at(g.h, g.w, 0, 0, divisor);
  const bool streaming = g.planes * in_plane >= kGlobalStreamMinFloats;
  const V lanes = Ops::load(kLanes);
  for_each_plane_share(g.planes, g.planes * (in_plane + 1), [&](int64_t begin, int64_t end) {
    if (begin >= end) return;
    int64_t plane = begin, plane_end = (begin + 1) * in_plane;  // plane_end: where `plane` ends in grad_x
    const auto share = [&](int64_t p) { return d != 0.0f ? grad_y[p] / d : 0.0f; };
    float current = share(begin);
    write_row<Ops>(grad_x + begin * in_plane, (end - begin) * in_plane, streaming, [&](int64_t i, int64_t len) {
      const int64_t at = begin * in_plane + i;
      if (at >= plane_end) {
        ++plane;
        plane_end += in_plane;
        current = share(plane);
      }
      if (at + len <= plane_end) return Ops::set1(current);
      // Lanes from plane_end - at on belong to the next plane.
      return Ops::select(Ops::lt(lanes, Ops::set1(static_cast<float>(plane_end - at))), Ops::set1(current),
                         Ops::set1(share(plane + 1)));
    });
    if (streaming) Ops::stream_fence();
  });
}

// The input rows [0, h.in) in order, with the windows along H that cover
// each: visit(i, lo, hi) for row i, whose windows lie among [lo, hi) (those
// with i among their taps; windows are monotone: first[] and the last taps
// never decrease), after enter(p) for each window p as it first comes into
// [lo, hi). Windows with no tap in range cover nothing.
template <class Enter, class Visit>
void sweep_rows(const PoolAxis& h, const Enter& enter, const Visit& visit) {
  int64_t lo = 0, hi = 0;
  for (int64_t i = 0; i < h.in; ++i) {
    while (lo < h.out && (h.taps[lo] == 0 || h.first[lo] + (h.taps[lo] - 1) * h.dilation < i)) ++lo;
    while (hi < h.out && (h.taps[hi] == 0 || h.first[hi] <= i)) enter(hi++);
    visit(i, lo < hi ? lo : hi, hi);
  }
}

// Whether window p along H has input row i among its taps.
inline bool row_in_window(const PoolAxis& h, int64_t p, int64_t i) {
  const int64_t t = i - h.first[p];
  if (h.taps[p] == 0 || t < 0) return false;
  if (h.dilation == 1) return t < h.taps[p];  // no division on the common path
  return t % h.dilation == 0 && t / h.dilation < h.taps[p];
}

// Each input position gathers grad_y / divisor of every window holding it,
// in two separable steps: the shares of each output row p summed along W
// into u_p (a row over the input columns), then each input row written
// once as the sum of the u_p of the windows covering it (vector adds along
// the row; the u_p live in a ring of as many rows as windows cover one
// input row). Writing each row once, rather than adding each u_p into the
// rows of its window, avoids re-reading rows just written with masked
// stores (13-wide rows: a masked load waits for the masked store before it
// to leave the store buffer; that was 40% of adaptive 13 -> 6). For
// stride-1 windows along W, u_p is vectorized too, as the adjoint of the
// forward's second pass: the shares go into a zero-padded row buffer, of
// which u_p[j] sums the kernel entries of the windows over column j. The
// windows phased_forward takes along W (Taps not void) spread the shares
// as the adjoint of its W pass instead: a block of W windows' shares makes
// the phase vectors of its input columns, each the sum of the shares
// shifted back by its taps' lanes, interleaved into the row for stride 2.
template <class Ops, class Taps>
void avg_backward_as(const PoolGeometry& g, const float* grad_y, float* grad_x, float divisor) {
  using V = typename Ops::V;
  constexpr bool kPhased = !std::is_void_v<Taps>;
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  const int64_t in_plane = h.in * w.in, out_plane = h.out * w.out;
  const bool by_columns = !kPhased && w.regular && w.stride == 1 && w.dilation == 1 && w.kernel > 1;
  // The last vector of u reads up to W - 1 entries past column in - 1 + pad + kw - 1.
  const int64_t shares_floats = by_columns ? w.in + w.pad + w.kernel - 1 + Ops::W : w.out + Ops::W;
  // A phased block of W shares writes stride * W columns of u; blocks past
  // the shares write the columns no window covers (zeros).
  const int64_t share_blocks = (w.out + Ops::W - 1) / Ops::W;
  int64_t spread_blocks = share_blocks;
  int64_t u_row = (w.in + Ops::W - 1) / Ops::W * Ops::W;
  if constexpr (kPhased) {
    constexpr int64_t kSpan = int64_t{Taps::kStride} * Ops::W;
    if ((w.in + kSpan - 1) / kSpan > spread_blocks) spread_blocks = (w.in + kSpan - 1) / kSpan;
    if (spread_blocks * kSpan > u_row) u_row = spread_blocks * kSpan;
  }
  // Windows along W that are contiguous and monotone (every regular or
  // adaptive axis without dilation; zero-tap windows only at the ends).
  const bool spread_by_vectors = !kPhased && !by_columns && w.dilation == 1 && w.in < (int64_t{1} << 24);
  static constexpr float kLanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const V lanes = Ops::load(kLanes);
  // Rows of at most W columns from fewer than W windows (adaptive 13 -> 6)
  // spread across the lanes instead: u is the sum over k of the shares
  // permuted by window_of[k], column j's k-th window (in order, so the sum
  // is that of the loop above), or window w.out, whose share lane is 0.
  const bool lane_spread = spread_by_vectors && w.in <= Ops::W && w.out < Ops::W;
  int32_t window_of[Ops::W][Ops::W];
  int64_t windows_per_column = 0;
  if (lane_spread) {
    int64_t count[Ops::W] = {};
    for (int64_t k = 0; k < Ops::W; ++k) {
      for (int64_t j = 0; j < Ops::W; ++j) window_of[k][j] = static_cast<int32_t>(w.out);
    }
    for (int64_t q = 0; q < w.out; ++q) {
      for (int64_t j = w.first[q]; j < w.first[q] + w.taps[q]; ++j) {
        window_of[count[j]++][j] = static_cast<int32_t>(q);
        if (count[j] > windows_per_column) windows_per_column = count[j];
      }
    }
  }
  int64_t ring_rows = 1;  // the most windows covering one input row
  sweep_rows(h, [](int64_t) {}, [&](int64_t, int64_t lo, int64_t hi) {
    if (hi - lo > ring_rows) ring_rows = hi - lo;
  });
  for_each_plane(g.planes, g.planes * (in_plane + out_plane), [&](int64_t plane) {
    float* gx = grad_x + plane * in_plane;
    const float* gy = grad_y + plane * out_plane;
    float* ring = minidnn::thread_scratch(minidnn::ScratchSlot::pooling_row, ring_rows * u_row + shares_floats);
    // shares[kw - 1 + q] for output q by columns; only those are rewritten per row.
    float* shares = ring + ring_rows * u_row;
    if (by_columns) fill_zero<Ops>(shares, shares_floats);
    const auto enter = [&](int64_t p) {  // u_p into its ring row
      if (h.taps[p] == 0) return;
      float* u = ring + p % ring_rows * u_row;
      if (by_columns) {
        // Every stride-1 window has a tap in range: no divisor is 0.
        // Lanes past w.out come out 0 (0 / 1), keeping the padding 0.
        store_vectors<Ops>(shares + w.kernel - 1, w.out, [&](int64_t q, int64_t len) {
          return Ops::div(load_part<Ops>(gy + p * w.out, q, len, 0.0f), divisor_vector<Ops>(h, w, p, q, len, divisor));
        });
        // The windows over column j are q = j + pad - (kw - 1) .. j + pad.
        store_vectors<Ops>(u, w.in, [&](int64_t j, int64_t) {
          V s = Ops::load(shares + j + w.pad);
          for (int64_t t = 1; t < w.kernel; ++t) s = Ops::add(s, Ops::load(shares + j + w.pad + t));
          return s;
        });
      } else if constexpr (kPhased) {
        // Lanes past w.out come out 0 (0 / 1): no share past the row.
        store_vectors<Ops>(shares, w.out, [&](int64_t q, int64_t len) {
          return Ops::div(load_part<Ops>(gy + p * w.out, q, len, 0.0f), divisor_vector<Ops>(h, w, p, q, len, divisor));
        });
        constexpr int kS = Taps::kStride;
        V prev = Ops::zero(), cur = Ops::load(shares), next;
        for (int64_t b = 0; b < spread_blocks; ++b) {
          next = b + 1 < share_blocks ? Ops::load(shares + (b + 1) * Ops::W) : Ops::zero();
          V phases[kS];
          for (int r = 0; r < kS; ++r) phases[r] = Ops::zero();
          // Tap j of window q is column kS * (q + shift) + phase: the column
          // at lane m of its phase takes the share of window m - shift. Taps
          // from the last: the windows of a column in order.
#pragma GCC unroll 4
          for (int j = Taps::kKernel - 1; j >= 0; --j) {
            const int r = Taps::phase(j);
            phases[r] = Ops::add(phases[r], Taps::shift(j) < 0   ? Ops::shift_next(cur, next)
                                            : Taps::shift(j) > 0 ? Ops::shift_in(prev, cur)
                                                                 : cur);
          }
          if constexpr (kS == 1) {
            Ops::store(u + b * Ops::W, phases[0]);
          } else {
            Ops::interleave(phases[0], phases[1], u + b * 2 * Ops::W);
          }
          prev = cur;
          cur = next;
        }
      } else if (lane_spread) {
        // Lanes past w.out come out 0 (0 / 1).
        const V share = Ops::div(load_part<Ops>(gy + p * w.out, 0, w.out, 0.0f), divisor_vector<Ops>(h, w, p, 0, w.out, divisor));
        V s = Ops::zero();
        for (int64_t k = 0; k < windows_per_column; ++k) s = Ops::add(s, Ops::permute(share, window_of[k]));
        Ops::store(u, s);
      } else {
        // The row's shares in vector divisions, then spread over the
        // windows. A divisor of 0 (made 1 by divisor_vector) comes only
        // with no tap in range, where nothing is spread.
        store_vectors<Ops>(shares, w.out, [&](int64_t q, int64_t len) {
          return Ops::div(load_part<Ops>(gy + p * w.out, q, len, 0.0f), divisor_vector<Ops>(h, w, p, q, len, divisor));
        });
        if (spread_by_vectors) {
          // u[j] for a vector of columns at a time: each window's share in
          // the lanes of its columns (compared as floats: exact, as the row
          // is narrower than 2^24). Stored whole, the rows below load it at
          // once, where scalar adds into it made them wait.
          int64_t q_lo = 0;
          for (int64_t k = 0; k < u_row; k += Ops::W) {
            while (q_lo < w.out && w.first[q_lo] + w.taps[q_lo] <= k) ++q_lo;
            const V columns = Ops::add(lanes, Ops::set1(static_cast<float>(k)));
            V s = Ops::zero();
            for (int64_t q = q_lo; q < w.out && w.first[q] < k + Ops::W; ++q) {
              const V in = Ops::select(Ops::gt(columns, Ops::set1(static_cast<float>(w.first[q] - 1))),
                                       Ops::set1(shares[q]), Ops::zero());
              s = Ops::add(s, Ops::select(Ops::lt(columns, Ops::set1(static_cast<float>(w.first[q] + w.taps[q]))), in,
                                          Ops::zero()));
            }
            Ops::store(u + k, s);
          }
        } else {
          store_vectors<Ops>(u, w.in, [](int64_t, int64_t) { return Ops::zero(); });
          for (int64_t q = 0; q < w.out; ++q) {
            for (int64_t tw = 0; tw < w.taps[q]; ++tw) u[w.first[q] + tw * w.dilation] += shares[q];
          }
        }
      }
    };
    sweep_rows(h, enter, [&](int64_t i, int64_t lo, int64_t hi) {
      const int64_t lo_slot = lo % ring_rows;
      store_row<Ops>(gx + i * w.in, w.in, [&](int64_t j, int64_t) {
        V s = Ops::zero();
        for (int64_t p = lo, slot = lo_slot; p < hi; ++p, slot = slot + 1 == ring_rows ? 0 : slot + 1) {
          if (row_in_window(h, p, i)) s = Ops::add(s, Ops::load(ring + slot * u_row + j));  // rows padded to u_row
        }
        return s;
      });
    });
  });
}

template <class Ops>
void pool_avg_backward(const PoolGeometry& g, const float* grad_y, float* grad_x, float divisor) {
  const PoolAxis& h = g.h;
  const PoolAxis& w = g.w;
  // Global pooling: one window over the whole plane, whose share fills it.
  if (h.out == 1 && w.out == 1 && h.dilation == 1 && w.dilation == 1 && h.taps[0] == h.in && w.taps[0] == w.in &&
      h.in * w.in >= Ops::W) {
    return global_avg_backward<Ops>(g, grad_y, grad_x, divisor);
  }
  if (with_phased_taps(w, [&](auto taps) { avg_backward_as<Ops, decltype(taps)>(g, grad_y, grad_x, divisor); })) {
    return;
  }
  avg_backward_as<Ops, void>(g, grad_y, grad_x, divisor);
}

// ------------------------------------------------- scatter through indices

inline void flag(int* bad) { __atomic_store_n(bad, 1, __ATOMIC_RELAXED); }

// dst planes (dst_plane floats) zeroed, then put(dst[indices[o]], src[o])
// for every o of each src plane (src_plane floats); each plane owned by one
// thread. An index outside its dst plane writes nothing and makes the result
// false. `cost_per_plane` sizes the thread count.
template <class Ops, class Put>
bool scatter_through_indices(int64_t planes, int64_t src_plane, int64_t dst_plane, int64_t cost_per_plane,
                             const float* src, const int64_t* indices, float* dst, Put put) {
  int bad = 0;
  for_each_plane(planes, planes * cost_per_plane, [&](int64_t plane) {
    float* d = dst + plane * dst_plane;
    const float* s = src + plane * src_plane;
    const int64_t* ix = indices + plane * src_plane;
    fill_zero<Ops>(d, dst_plane);
    for (int64_t o = 0; o < src_plane; ++o) {
      const int64_t i = ix[o];
      if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(dst_plane)) {
        flag(&bad);
        continue;
      }
      put(d[i], s[o]);
    }
  });
  return bad == 0;
}

template <class Ops>
bool pool_max_backward(int64_t planes, int64_t in_plane, int64_t out_plane, const float* grad_y,
                       const int64_t* indices, float* grad_x) {
  return scatter_through_indices<Ops>(planes, out_plane, in_plane, in_plane + 3 * out_plane, grad_y, indices, grad_x,
                                      [](float& d, float v) { d += v; });
}

// A repeated index keeps the last value (PyTorch's max_unpool2d).
template <class Ops>
bool pool_max_unpool(int64_t planes, int64_t x_plane, int64_t out_plane, const float* x, const int64_t* indices,
                     float* y) {
  return scatter_through_indices<Ops>(planes, x_plane, out_plane, 3 * x_plane + out_plane, x, indices, y,
                                      [](float& d, float v) { d = v; });
}

}  // namespace
