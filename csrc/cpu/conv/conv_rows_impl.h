// The row kernels of conv_rows.h written once over a SIMD vocabulary and
// instantiated by conv_rows_<isa>.cpp (anonymous namespace, simd/README.md).
#pragma once

#include <cstdint>

#include "cpu/conv/conv_rows.h"

namespace {

template <class Ops>
void conv_axpy(float* dst, int64_t ldd, const float* src, int64_t lds, float alpha, int64_t rows, int64_t n) {
  using V = typename Ops::V;
  const V a = Ops::set1(alpha);
  for (int64_t r = 0; r < rows; ++r, dst += ldd, src += lds) {
    int64_t i = 0;
    for (; i + 2 * Ops::W <= n; i += 2 * Ops::W) {
      const V d0 = Ops::fmadd(a, Ops::load(src + i), Ops::load(dst + i));
      const V d1 = Ops::fmadd(a, Ops::load(src + i + Ops::W), Ops::load(dst + i + Ops::W));
      Ops::store(dst + i, d0);
      Ops::store(dst + i + Ops::W, d1);
    }
    if (i + Ops::W <= n) {
      Ops::store(dst + i, Ops::fmadd(a, Ops::load(src + i), Ops::load(dst + i)));
      i += Ops::W;
    }
    if (i == n) continue;
    if (r + 1 == rows || ldd >= i + Ops::W) {
      const V d = Ops::fmadd(a, Ops::load_tail(src + i, n - i, 0.0f), Ops::load_tail(dst + i, n - i, 0.0f));
      Ops::store_tail(dst + i, d, n - i);
    } else {
      // The next row starts inside this vector's span: a masked store there
      // stalls that row's first load, which overlaps its masked-off lanes,
      // so the tail goes one float at a time (depthwise 3x3 backward data on
      // 8 x 144 x 56 x 56: 7.3 ms with the masked store, 4.6 ms without).
      for (; i < n; ++i) dst[i] += alpha * src[i];
    }
  }
}

// Each block of W source floats lands on the even elements of 2W
// destination floats: those are split into even and odd, the sources added
// to the even ones, and the two interleaved back, so the odd elements are
// rewritten unchanged. The destination span of a row ends at its last even
// element, 2 (n - 1): the last block (1 to W floats) goes by the _part forms.
template <class Ops>
void conv_add_stride2(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t n) {
  using V = typename Ops::V;
  if (n <= 0) return;
  for (int64_t r = 0; r < rows; ++r, dst += ldd, src += lds) {
    V even, odd;
    int64_t j = 0;
    for (; j + Ops::W < n; j += Ops::W) {
      Ops::deinterleave(dst + 2 * j, &even, &odd);
      Ops::interleave(Ops::add(even, Ops::load(src + j)), odd, dst + 2 * j);
    }
    const int64_t span = 2 * (n - j) - 1;
    Ops::deinterleave_part(dst + 2 * j, span, 0.0f, &even, &odd);
    Ops::interleave_part(Ops::add(even, Ops::load_tail(src + j, n - j, 0.0f)), odd, span, dst + 2 * j);
  }
}

template <class Ops>
void conv_copy_stride2(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r, dst += ldd, src += lds) {
    int64_t j = 0;
    for (; j + Ops::W <= n; j += Ops::W) Ops::store(dst + j, Ops::load_stride2(src + 2 * j));
    if (j < n) Ops::store_tail(dst + j, Ops::load_stride2_lanes(src + 2 * j, 0, n - j, 0.0f), n - j);
  }
}

// The first `lanes` floats of p as a vector, zeros past them.
template <class Ops>
typename Ops::V conv_load_lanes(const float* p, int64_t lanes) {
  return lanes >= Ops::W ? Ops::load(p) : Ops::load_tail(p, lanes, 0.0f);
}

// Four vector accumulators (two FMA ports, four cycles of latency) over all
// rows, summed pairwise, then the lanes. The row tails (under 4 vectors)
// are unrolled by hand: indexing the accumulators by a loop counter would
// keep them in memory.
template <class Ops>
float conv_dot(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t rows, int64_t n) {
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  V acc0 = Ops::zero(), acc1 = Ops::zero(), acc2 = Ops::zero(), acc3 = Ops::zero();
  for (int64_t r = 0; r < rows; ++r, a += lda, b += ldb) {
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      acc0 = Ops::fmadd(Ops::load(a + i), Ops::load(b + i), acc0);
      acc1 = Ops::fmadd(Ops::load(a + i + W), Ops::load(b + i + W), acc1);
      acc2 = Ops::fmadd(Ops::load(a + i + 2 * W), Ops::load(b + i + 2 * W), acc2);
      acc3 = Ops::fmadd(Ops::load(a + i + 3 * W), Ops::load(b + i + 3 * W), acc3);
    }
    const int64_t rest = n - i;
    if (rest > 0) acc0 = Ops::fmadd(conv_load_lanes<Ops>(a + i, rest), conv_load_lanes<Ops>(b + i, rest), acc0);
    if (rest > W) {
      acc1 = Ops::fmadd(conv_load_lanes<Ops>(a + i + W, rest - W), conv_load_lanes<Ops>(b + i + W, rest - W), acc1);
    }
    if (rest > 2 * W) {
      acc2 = Ops::fmadd(conv_load_lanes<Ops>(a + i + 2 * W, rest - 2 * W),
                        conv_load_lanes<Ops>(b + i + 2 * W, rest - 2 * W), acc2);
    }
    if (rest > 3 * W) {
      acc3 = Ops::fmadd(conv_load_lanes<Ops>(a + i + 3 * W, rest - 3 * W),
                        conv_load_lanes<Ops>(b + i + 3 * W, rest - 3 * W), acc3);
    }
  }
  return Ops::reduce_add(Ops::add(Ops::add(acc0, acc1), Ops::add(acc2, acc3)));
}

// The sum over i, j of a[i * lda + j], the same way.
template <class Ops>
float conv_sum(const float* a, int64_t lda, int64_t rows, int64_t n) {
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  V acc0 = Ops::zero(), acc1 = Ops::zero(), acc2 = Ops::zero(), acc3 = Ops::zero();
  for (int64_t r = 0; r < rows; ++r, a += lda) {
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      acc0 = Ops::add(Ops::load(a + i), acc0);
      acc1 = Ops::add(Ops::load(a + i + W), acc1);
      acc2 = Ops::add(Ops::load(a + i + 2 * W), acc2);
      acc3 = Ops::add(Ops::load(a + i + 3 * W), acc3);
    }
    const int64_t rest = n - i;
    if (rest > 0) acc0 = Ops::add(conv_load_lanes<Ops>(a + i, rest), acc0);
    if (rest > W) acc1 = Ops::add(conv_load_lanes<Ops>(a + i + W, rest - W), acc1);
    if (rest > 2 * W) acc2 = Ops::add(conv_load_lanes<Ops>(a + i + 2 * W, rest - 2 * W), acc2);
    if (rest > 3 * W) acc3 = Ops::add(conv_load_lanes<Ops>(a + i + 3 * W, rest - 3 * W), acc3);
  }
  return Ops::reduce_add(Ops::add(Ops::add(acc0, acc1), Ops::add(acc2, acc3)));
}

template <class Ops>
void conv_copy_runs(const float* src, int64_t stride, const minidnn::cpu::ConvCopyRun* runs, int64_t n, float* dst) {
  if (stride == 2) {
    for (int64_t i = 0; i < n; ++i) {
      const minidnn::cpu::ConvCopyRun& run = runs[i];
      Ops::store_tail(dst + run.dst, Ops::load_stride2_lanes(src + run.src, run.lo, run.hi, 0.0f), run.len);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const minidnn::cpu::ConvCopyRun& run = runs[i];
    Ops::store_tail(dst + run.dst, Ops::load_lanes(src + run.src, run.lo, run.hi, 0.0f), run.len);
  }
}

template <class Ops>
minidnn::cpu::ConvRowKernels make_conv_row_kernels() {
  return minidnn::cpu::ConvRowKernels{Ops::W, conv_axpy<Ops>, conv_dot<Ops>, conv_sum<Ops>, conv_copy_runs<Ops>,
                                      conv_add_stride2<Ops>, conv_copy_stride2<Ops>};
}

}  // namespace
