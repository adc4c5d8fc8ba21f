// Depthwise convolution forward, written once over a SIMD vocabulary and
// instantiated by depthwise_<isa>.cpp (anonymous namespace: see
// simd/README.md) over the ISA's Ops struct.
//
// Shape of the computation. Each (image, output channel) plane is
// independent: y[p, q] = bias + sum over taps (r, s) of w[r, s] times the
// input plane at (p sh - pad_top + r dh, q sw - pad_left + s dw). A thread
// takes a plane (or a chunk of its rows) and goes down it in bands of output
// rows, whole rows as vectors of W outputs, in register tiles of up to 8
// (AVX-512) or 4 rows x 2 vectors, with no scalar border columns. With
// stride_w 1 the tiles read the input in place: rows above or below it
// read a row of zeros, and the tiles at the left and right edges load only
// the lanes whose columns lie inside the input (masked loads), the rest
// zero; so does the 3x3 stride-2 tile (output_tile_stride2_3x3), which
// splits each row's columns in registers. With other strides a band's
// input rows are first copied into a zero-padded scratch (a few KB to 64
// KB, in cache), so that every output of the band reads inside it; with
// stride_w 2 the copy splits each row into its even and odd columns, so
// that every tap reads W consecutive floats of one half; for 3x3 and 5x5
// the tap counts are compile-time constants, and with stride_h 1 or 2 and
// no row dilation a tile loads each input row it reads once for all of
// its output rows (output_tile_shared_rows). A stride-3 or larger band
// that needs no padding (pad_left 0 and its rows inside the input) reads
// the input directly. Per output the kernel does R * S multiply-adds and reads the
// input from cache, so the layer runs at the speed of streaming x in and y
// out.
#pragma once

#include <cstdint>

#include "cpu/activation/activation_impl.h"
#include "cpu/conv/depthwise.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/store.h"
#include "runtime/threads.h"

namespace {

using minidnn::cpu::ConvEpilogue;
using minidnn::cpu::ConvGeometry;

// Multiply-adds below which a second thread costs more to wake than it saves.
constexpr int64_t kDepthwiseGrain = int64_t{1} << 16;
// When there are fewer planes than this many per thread, planes are split
// into row chunks so that the threads' shares stay even.
constexpr int64_t kItemsPerThread = 4;
// A band's padded input rows fill at most this many floats (64 KB, within
// L2 beside the output rows), unless one output row alone needs more.
constexpr int64_t kBandFloats = int64_t{1} << 14;

// How the rows of a plane are banded: `width` padded input columns (those
// the outputs read, from column -pad_left on), `rows` output rows a band,
// `in_place` when the tiles read the input in place (stride_w 1, and
// reads_stride2_in_place; the scratch then holds the row of zeros that
// rows outside the input read), `direct` when a band's rows are read in
// place because the columns need no padding (a band inside the input
// rows), `odd_half` where a row's odd columns start in the scratch when
// stride_w 2 splits the rows (else 0).
struct Bands {
  int64_t width, rows, scratch_floats, odd_half;
  bool in_place, direct;
};

// Input rows a band of `out_rows` output rows reads.
int64_t band_input_rows(const ConvGeometry& g, int64_t out_rows) {
  return (out_rows - 1) * g.stride_h + (g.r - 1) * g.dil_h + 1;
}

// 3x3 at stride_w 2 with dil_w 1 and row-shared tiles (dil_h 1, stride_h 1
// or 2): output_tile_stride2_3x3 reads the input in place. Splitting its
// rows into even and odd columns in the scratch took half of MobileNet's
// 3x3/2 layer; the tile gets all three taps of a row from one pair of
// loads (bench/NOTES.md, branch dw2). Other stride-2 kernels split the
// rows: their taps would each need a permute of their own in place, which
// measured up to 15% slower (5x5/2 at 56).
bool reads_stride2_in_place(const ConvGeometry& g) {
  return g.stride_w == 2 && g.r == 3 && g.s == 3 && g.dil_w == 1 && g.dil_h == 1 &&
         (g.stride_h == 1 || g.stride_h == 2);
}

Bands plan_bands(const ConvGeometry& g) {
  Bands b;
  b.width = (g.q - 1) * g.stride_w + (g.s - 1) * g.dil_w + 1;
  const int64_t fit = kBandFloats / b.width;  // padded input rows within the budget
  const int64_t one = band_input_rows(g, 1);
  b.rows = fit > one ? (fit - one) / g.stride_h + 1 : 1;
  if (b.rows > g.p) b.rows = g.p;
  // Stride-1 rows are read in place: copying them into the scratch cost a
  // third of the layer's time (bench/NOTES.md), masking the loads of the
  // edge tiles next to nothing.
  b.in_place = g.stride_w == 1 || reads_stride2_in_place(g);
  b.scratch_floats = b.in_place ? g.w : band_input_rows(g, b.rows) * b.width;
  // Other stride-2 rows go through the scratch: splitting them there costs
  // a permute per vector of input, where loading the even columns from the
  // rows in place costs one per vector of every tap that reads them.
  b.odd_half = g.stride_w == 2 && !b.in_place ? (b.width + 1) / 2 : 0;
  b.direct = g.stride_w > 2 && g.pad_left == 0 && b.width <= g.w;
  return b;
}

// Fills rows [0, count) of the band's scratch (rows bands.width floats
// apart) with input rows first, first + 1, ... of the plane x, each shifted
// right by pad_left, and zeros where the rows fall outside the input; when
// stride_w 2 splits the rows (bands.odd_half > 0), each row as its even
// padded columns, then from odd_half on its odd ones. The columns outside
// the input are the same in every band: the caller zeroes the scratch once
// and this writes only the input's columns of a row (or zeros over all of
// it for a row outside the input). Vector loads and stores inline: the
// rows are a few vectors wide, and memset / memcpy calls per row cost as
// much as the copy itself (bench/NOTES.md).
template <class Ops>
void fill_rows(const ConvGeometry& g, const Bands& bands, const float* x, int64_t first, int64_t count,
               float* scratch) {
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  const int64_t width = bands.width;
  const int64_t left = g.pad_left < width ? g.pad_left : width;  // zeros before the input's columns
  const int64_t copied = g.w < width - left ? g.w : width - left;
  // Input column t lands at padded column t + left: with the split, in half
  // (t + left) % 2 at (t + left) / 2, so the input's even columns go on from
  // even_at and its odd ones from odd_at.
  const int64_t split = bands.odd_half;
  const int64_t even_at = (left & 1) * split + (left >> 1);
  const int64_t odd_at = ((left + 1) & 1) * split + ((left + 1) >> 1);
  // Columns in whole pairs of vectors, then the rest (fewer than 2 W).
  const int64_t whole = copied / (2 * W) * (2 * W), tail = copied - whole;
  for (int64_t i = 0; i < count; ++i) {
    float* row = scratch + i * width;
    const int64_t ih = first + i;
    if (ih < 0 || ih >= g.h) {
      store_row<Ops>(row, width, [](int64_t, int64_t) { return Ops::zero(); });
      continue;
    }
    const float* src = x + ih * g.w;
    if (split == 0) {
      store_row<Ops>(row + left, copied, [&](int64_t j, int64_t len) { return load_part<Ops>(src, j, len, 0.0f); });
      continue;
    }
    int64_t t = 0;
    for (; t < whole; t += 2 * W) {
      V even, odd;
      Ops::deinterleave(src + t, &even, &odd);
      Ops::store(row + even_at + t / 2, even);
      Ops::store(row + odd_at + t / 2, odd);
    }
    if (tail > 0) {
      V even, odd;
      Ops::deinterleave_part(src + t, tail, 0.0f, &even, &odd);
      const int64_t evens = (tail + 1) / 2, odds = tail / 2;  // odds < W
      if (evens == W) {
        Ops::store(row + even_at + t / 2, even);
      } else {
        Ops::store_tail(row + even_at + t / 2, even, evens);
      }
      if (odds > 0) Ops::store_tail(row + odd_at + t / 2, odd, odds);
    }
  }
}

// Lanes i < n from p[i * stride], other lanes 0, reading nothing past
// p[(n - 1) * stride]: a vector load for kStride 1 and 2 (whose rows are
// split into even and odd halves: stride 1 within a half), a gather
// through a buffer for any other stride (kStride 0).
template <class Ops, int kStride>
typename Ops::V load_strided(const float* p, int64_t n, int64_t stride) {
  if constexpr (kStride == 1 || kStride == 2) {
    return n == Ops::W ? Ops::load(p) : Ops::load_tail(p, n, 0.0f);
  } else {
    alignas(64) float lanes[Ops::W] = {};
    for (int64_t i = 0; i < n; ++i) lanes[i] = p[i * stride];
    return Ops::load(lanes);
  }
}

// What a group of output rows reads: rows of `plane`, the input plane (in
// place) or the band's scratch, and how to step between output rows, taps
// and lanes.
struct RowTaps {
  const float* plane;
  int64_t ld;         // floats between rows of `plane`
  int64_t first_row;  // the row of `plane` that tap row 0 of the group's first output row reads
  int64_t in_rows;    // rows [0, in_rows) of `plane` hold data; the others read `zero`
  const float* zero;  // in place: g.w zeros
  int64_t col0;       // the column tap column 0 of output column 0 reads: -pad_left in place, 0 in the scratch
  int64_t in_cols;    // in place: columns [0, in_cols) hold data; edge tiles read no others
  const float* w;     // the R x S weights
  int64_t rows;       // R
  int64_t cols;       // S
  int64_t out_step;   // stride_h: rows between the tap rows 0 of neighbouring output rows
  int64_t row_step;   // dil_h: rows between tap rows
  int64_t dil_w;      // input columns between taps of a row
  int64_t lane_step;  // floats between the inputs of neighbouring outputs: stride_w, 1 in split rows
  int64_t odd_half;   // where a split row's odd columns start (Bands::odd_half)
  float bias;
};

// Row j (from first_row on) of what a group reads: a row of `plane`, or
// the zeros for a row outside the input.
const float* tap_row(const RowTaps& t, int64_t j) {
  const int64_t row = t.first_row + j;
  return row >= 0 && row < t.in_rows ? t.plane + row * t.ld : t.zero;
}

// Where tap column s of output column q reads in a row: column
// col0 + q * stride_w + s * dil_w, which a kStride 2 row, split into
// halves, keeps in half (s * dil_w) % 2 at q + (s * dil_w) / 2.
template <int kStride>
int64_t tap_column(const RowTaps& t, int64_t q, int64_t s) {
  const int64_t c = s * t.dil_w;
  if constexpr (kStride == 2) return q + (c & 1) * t.odd_half + (c >> 1);
  return t.col0 + q * t.lane_step + c;
}

// Lanes [lo, hi) of a vector from column col on, `lanes` wide, whose
// columns lie inside a row's [0, in_cols): those an edge tile's masked
// load reads.
struct EdgeLanes {
  int64_t lo, hi;
};

EdgeLanes edge_lanes(int64_t col, int64_t lanes, int64_t in_cols) {
  int64_t lo = -col, hi = in_cols - col;
  if (lo < 0) lo = 0;
  if (lo > lanes) lo = lanes;  // a vector all left of the input: no lane read
  if (hi > lanes) hi = lanes;
  if (hi < lo) hi = lo;
  return {lo, hi};
}

// The vector of lanes [0, lanes) from column col of `row`: with kEdge
// (stride_w 1 only) only lanes [e.lo, e.hi) are read, the others 0, and
// the address may lie outside the row.
template <class Ops, int kStride, bool kEdge>
typename Ops::V load_taps(const float* row, int64_t col, int64_t lanes, EdgeLanes e, int64_t stride) {
  if constexpr (kEdge) {
    return Ops::load_lanes(row + col, e.lo, e.hi, 0.0f);
  } else {
    return load_strided<Ops, kStride>(row + col, lanes, stride);
  }
}

// A tile's BR x BV accumulators into y from column q on (rows y_step
// apart), the last vector of each row `last` wide when kTail.
template <class Ops, int BR, int BV, bool kTail>
void store_tile(const typename Ops::V (&acc)[BR][BV], int64_t q, int64_t last, float* y, int64_t y_step) {
  for (int i = 0; i < BR; ++i) {
    float* yi = y + i * y_step + q;
    for (int b = 0; b < BV; ++b) {
      if (kTail && b == BV - 1) {
        Ops::store_tail(yi + b * Ops::W, acc[i][b], last);
      } else {
        Ops::store(yi + b * Ops::W, acc[i][b]);
      }
    }
  }
}

// A tile of BR output rows x BV vectors from column q on, each vector W
// outputs except the last, which has `last` (<= W; kTail says it may be
// fewer). BR * BV independent accumulators share each broadcast weight: 8
// to 16 of them (kMaxRows) keep the multiply-add units busy through its
// latency even when a row is only one or two vectors wide (5x5 at 28: 25
// dependent multiply-adds per accumulator). kR / kS > 0 fix the tap counts at
// compile time (then they equal t.rows / t.cols). kEdge: some lanes read
// outside the input's columns (load_taps). y_step: output floats between
// rows.
template <class Ops, int kStride, int kR, int kS, int BR, int BV, bool kTail, bool kEdge>
void output_tile(const RowTaps& t, int64_t q, int64_t last, float* y, int64_t y_step) {
  using V = typename Ops::V;
  const int64_t rows = kR > 0 ? kR : t.rows;
  const int64_t cols = kS > 0 ? kS : t.cols;
  V acc[BR][BV];
  for (int i = 0; i < BR; ++i) {
    for (int b = 0; b < BV; ++b) acc[i][b] = Ops::set1(t.bias);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = t.w + r * cols;
    for (int64_t s = 0; s < cols; ++s) {
      const V w = Ops::set1(wr[s]);
      for (int b = 0; b < BV; ++b) {
        const int64_t lanes = kTail && b == BV - 1 ? last : Ops::W;
        const int64_t col = tap_column<kStride>(t, q, s) + b * Ops::W * t.lane_step;
        const EdgeLanes e = kEdge ? edge_lanes(col, lanes, t.in_cols) : EdgeLanes{0, lanes};
        for (int i = 0; i < BR; ++i) {
          const float* row = tap_row(t, i * t.out_step + r * t.row_step);
          acc[i][b] = Ops::fmadd(w, load_taps<Ops, kStride, kEdge>(row, col, lanes, e, t.lane_step), acc[i][b]);
        }
      }
    }
  }
  store_tile<Ops, BR, BV, kTail>(acc, q, last, y, y_step);
}

// Output rows a tile takes at most: 8 with AVX-512's 32 registers (8 x 2
// accumulators beside a tap column's 5 weights and a row's 2 vectors), 4
// with AVX2's 16. 5x5 at 28 ran 19% faster with 8 than with 4 (twice the
// independent multiply-adds in flight, 12 input rows loaded a tap column
// for 8 output rows instead of 8 for 4), 3x3 at 56 10% (bench/NOTES.md).
template <class Ops>
constexpr int kMaxRows = Ops::W >= 16 ? 8 : 4;

// output_tile for kernels whose tap rows are one input row apart (dil_h 1)
// with stride_h kStrideH (1 or 2) and kR x kS taps: output row i, tap row r
// reads input row i * kStrideH + r, so the tile's BR output rows read only
// (BR - 1) * kStrideH + kR distinct input rows. Per tap column s it loads
// each of those rows once (BV vectors) and adds it, times the tap row's
// weight, into every output row that reads it: for 5x5 with 4 x 2
// accumulators 16 input loads and 5 weight broadcasts for 40 multiply-adds,
// where output_tile does 40 loads (most of them split across cache lines)
// and 25 broadcasts, and is bound by the loads. Every accumulator adds its
// taps in the order (s, r) whatever BR is, so a plane's outputs do not
// depend on how its rows are grouped into tiles.
template <class Ops, int kStride, int kStrideH, int kR, int kS, int BR, int BV, bool kTail, bool kEdge>
void output_tile_shared_rows(const RowTaps& t, int64_t q, int64_t last, float* y, int64_t y_step) {
  using V = typename Ops::V;
  constexpr int kInputRows = (BR - 1) * kStrideH + kR;
  const float* rows[kInputRows];
  for (int j = 0; j < kInputRows; ++j) rows[j] = tap_row(t, j);
  V acc[BR][BV];
  for (int i = 0; i < BR; ++i) {
    for (int b = 0; b < BV; ++b) acc[i][b] = Ops::set1(t.bias);
  }
  for (int s = 0; s < kS; ++s) {
    V w[kR];
    for (int r = 0; r < kR; ++r) w[r] = Ops::set1(t.w[r * kS + s]);
    int64_t col[BV], lanes[BV];
    EdgeLanes e[BV];
    for (int b = 0; b < BV; ++b) {
      lanes[b] = kTail && b == BV - 1 ? last : Ops::W;
      col[b] = tap_column<kStride>(t, q, s) + b * Ops::W * t.lane_step;
      e[b] = kEdge ? edge_lanes(col[b], lanes[b], t.in_cols) : EdgeLanes{0, lanes[b]};
    }
    // Unrolled in full, so that the accumulators stay in registers (GCC's
    // default limits leave 8-row tiles' loops rolled and the accumulators in
    // memory).
#pragma GCC unroll 32
    for (int j = 0; j < kInputRows; ++j) {
      V row[BV];
      for (int b = 0; b < BV; ++b) {
        row[b] = load_taps<Ops, kStride, kEdge>(rows[j], col[b], lanes[b], e[b], t.lane_step);
        // Each row vector feeds up to kR multiply-adds. Left to itself GCC
        // folds the load into every one of them (a memory operand each):
        // AVX-512's 8 x 2 tile of a 3x3 kernel made 48 loads a tap column
        // instead of 20 and took a fifth longer on Zen 4. With AVX2's 16
        // registers the folded loads measured faster (bench/NOTES.md).
        if constexpr (kMaxRows<Ops> == 8) row[b] = Ops::in_register(row[b]);
      }
#pragma GCC unroll 16
      for (int i = 0; i < BR; ++i) {
        const int r = j - i * kStrideH;
        if (r < 0 || r >= kR) continue;
        for (int b = 0; b < BV; ++b) acc[i][b] = Ops::fmadd(w[r], row[b], acc[i][b]);
      }
    }
  }
  store_tile<Ops, BR, BV, kTail>(acc, q, last, y, y_step);
}

// Lanes [lo, hi) of the vector from column col on (lane l reading column
// col + l) that a tile reads: those below `needed` whose columns lie in a
// row's [0, in_cols).
EdgeLanes needed_lanes(int64_t col, int64_t needed, int64_t lanes, int64_t in_cols) {
  if (needed < 0) needed = 0;
  const EdgeLanes e = edge_lanes(col, lanes, in_cols);
  return {e.lo < needed ? e.lo : needed, e.hi < needed ? e.hi : needed};
}

// output_tile_shared_rows for 3x3 kernels at stride_w 2 with dil_w 1
// (reads_stride2_in_place), reading the input in place: the three taps of
// a row read columns c + 2l, c + 1 + 2l and c + 2 + 2l, so one pair of
// loads from column c serves all three: its
// even elements are tap 0, its odd ones tap 1, and tap 2 is tap 0 moved
// one lane (Ops::shift_next, with lane 0 of the next vector's tap 0): two
// loads and three shuffles a row and vector, where three load_stride2
// cost six and three. The loads are masked to the columns inside the row
// (zeros for the padding), so edge tiles need no other form. A tile goes
// down its input rows once, adding each row's taps into the output rows
// that read it; every accumulator adds its taps in the order (r, s),
// whatever BR is.
template <class Ops, int kStrideH, int BR, int BV, bool kTail>
void output_tile_stride2_3x3(const RowTaps& t, int64_t q, int64_t last, float* y, int64_t y_step) {
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  constexpr int kInputRows = (BR - 1) * kStrideH + 3;
  V acc[BR][BV];
  for (int i = 0; i < BR; ++i) {
    for (int b = 0; b < BV; ++b) acc[i][b] = Ops::set1(t.bias);
  }
  // Vector b's pair of loads starts at column col[b]; of its 2W elements
  // the taps of `lanes` outputs need the first 2 lanes + 1 (all 2W and the
  // first of the next pair's when lanes is W).
  int64_t col[BV];
  EdgeLanes first[BV], second[BV];
  for (int b = 0; b < BV; ++b) {
    const int64_t lanes = kTail && b == BV - 1 ? last : W;
    col[b] = t.col0 + 2 * (q + W * b);
    first[b] = needed_lanes(col[b], 2 * lanes + 1, W, t.in_cols);
    second[b] = needed_lanes(col[b] + W, 2 * lanes + 1 - W, W, t.in_cols);
  }
  const int64_t next_col = col[BV - 1] + 2 * W;
  const EdgeLanes next = needed_lanes(next_col, kTail && last < W ? 0 : 1, W, t.in_cols);
#pragma GCC unroll 32
  for (int j = 0; j < kInputRows; ++j) {
    const float* in = tap_row(t, j);
    V taps[3][BV];
    for (int b = 0; b < BV; ++b) {
      Ops::split_pairs(Ops::load_lanes(in + col[b], first[b].lo, first[b].hi, 0.0f),
                       Ops::load_lanes(in + col[b] + W, second[b].lo, second[b].hi, 0.0f), &taps[0][b], &taps[1][b]);
    }
    const V after = Ops::load_lanes(in + next_col, next.lo, next.hi, 0.0f);
    for (int b = 0; b < BV; ++b) taps[2][b] = Ops::shift_next(taps[0][b], b + 1 < BV ? taps[0][b + 1] : after);
#pragma GCC unroll 16
    for (int i = 0; i < BR; ++i) {
      const int r = j - i * kStrideH;
      if (r < 0 || r >= 3) continue;
      for (int s = 0; s < 3; ++s) {
        const V w = Ops::set1(t.w[r * 3 + s]);
        for (int b = 0; b < BV; ++b) acc[i][b] = Ops::fmadd(w, taps[s][b], acc[i][b]);
      }
    }
  }
  store_tile<Ops, BR, BV, kTail>(acc, q, last, y, y_step);
}

// One tile: output_tile_shared_rows when kStrideH says the rows share
// input rows (kStrideH > 0: dil_h 1, stride_h kStrideH, taps fixed at
// compile time), output_tile otherwise.
template <class Ops, int kStride, int kStrideH, int kR, int kS, int BR, int BV, bool kTail, bool kEdge>
void tile_as(const RowTaps& t, int64_t q, int64_t last, float* y, int64_t y_step) {
  if constexpr (kStride == 2 && kStrideH > 0 && kR == 3 && kS == 3) {
    // reads_stride2_in_place: these rows were not split into a scratch.
    if (t.dil_w == 1) return output_tile_stride2_3x3<Ops, kStrideH, BR, BV, kTail>(t, q, last, y, y_step);
  }
  if constexpr (kStrideH > 0) {
    output_tile_shared_rows<Ops, kStride, kStrideH, kR, kS, BR, BV, kTail, kEdge>(t, q, last, y, y_step);
  } else {
    output_tile<Ops, kStride, kR, kS, BR, BV, kTail, kEdge>(t, q, last, y, y_step);
  }
}

// tile_as, in place (stride_w 1) in its edge form when a tap of the tile
// reads a column outside the input.
template <class Ops, int kStride, int kStrideH, int kR, int kS, int BR, int BV, bool kTail>
void tile(const RowTaps& t, int64_t q, int64_t last, float* y, int64_t y_step) {
  if constexpr (kStride == 1) {
    const int64_t first = tap_column<1>(t, q, 0);
    const int64_t end = tap_column<1>(t, q + (BV - 1) * Ops::W + last - 1, t.cols - 1) + 1;
    if (first < 0 || end > t.in_cols) {
      return tile_as<Ops, kStride, kStrideH, kR, kS, BR, BV, kTail, true>(t, q, last, y, y_step);
    }
  }
  tile_as<Ops, kStride, kStrideH, kR, kS, BR, BV, kTail, false>(t, q, last, y, y_step);
}

// Outputs [0, q_end) of BR rows, in tiles of 2 vectors (8 / BR wide would
// serve one-row groups better, but those are at most the last row of a
// band).
template <class Ops, int kStride, int kStrideH, int kR, int kS, int BR>
void output_rows(const RowTaps& t, int64_t q_end, float* y) {
  constexpr int64_t W = Ops::W;
  int64_t q = 0;
  for (; q + 2 * W <= q_end; q += 2 * W) tile<Ops, kStride, kStrideH, kR, kS, BR, 2, false>(t, q, W, y, q_end);
  const int64_t rest = q_end - q;
  if (rest > W) {
    tile<Ops, kStride, kStrideH, kR, kS, BR, 2, true>(t, q, rest - W, y, q_end);
  } else if (rest > 0) {
    tile<Ops, kStride, kStrideH, kR, kS, BR, 1, true>(t, q, rest, y, q_end);
  }
}

// Output rows [p_begin, p_end) of one plane: x the input plane, w the
// output channel's R x S weights, y the output plane; scratch holds
// bands.scratch_floats.
template <class Ops, int kStride, int kStrideH, int kR, int kS>
void plane_rows(const ConvGeometry& g, const Bands& bands, const float* x, const float* w, float bias,
                const ConvEpilogue& ep, int64_t p_begin, int64_t p_end, float* scratch, float* y) {
  for (int64_t band = p_begin; band < p_end; band += bands.rows) {
    const int64_t band_end = band + bands.rows < p_end ? band + bands.rows : p_end;
    const int64_t first = band * g.stride_h - g.pad_top;  // the input row of the band's first tap row
    const int64_t count = band_input_rows(g, band_end - band);
    // In place: the plane's rows, `first` the band's first; else the band's
    // rows from row 0 on, all inside.
    RowTaps t{x, g.w, 0, g.h, scratch, -g.pad_left, g.w, w, g.r, g.s, g.stride_h, g.dil_h, g.dil_w,
              kStride == 2 ? 1 : g.stride_w, bands.odd_half, bias};
    if (!bands.in_place) {
      t.col0 = 0;
      t.in_rows = count;
      if (bands.direct && first >= 0 && first + count <= g.h) {
        t.plane = x + first * g.w;
      } else {
        fill_rows<Ops>(g, bands, x, first, count, scratch);
        t.plane = scratch;
        t.ld = bands.width;
      }
    }
    const int64_t band_row = bands.in_place ? first : 0;  // the row of t.plane the band's first tap row reads
    // Groups of kMaxRows output rows, then 4, 2, 1.
    for (int64_t p = band; p < band_end;) {
      t.first_row = band_row + (p - band) * g.stride_h;
      const int64_t remaining = band_end - p;
      const int64_t group = remaining >= kMaxRows<Ops> ? kMaxRows<Ops> : remaining >= 4 ? 4 : remaining >= 2 ? 2 : 1;
      if (group == kMaxRows<Ops>) {
        output_rows<Ops, kStride, kStrideH, kR, kS, kMaxRows<Ops>>(t, g.q, y + p * g.q);
      } else if (group == 4) {
        output_rows<Ops, kStride, kStrideH, kR, kS, 4>(t, g.q, y + p * g.q);
      } else if (group == 2) {
        output_rows<Ops, kStride, kStrideH, kR, kS, 2>(t, g.q, y + p * g.q);
      } else {
        output_rows<Ops, kStride, kStrideH, kR, kS, 1>(t, g.q, y + p * g.q);
      }
      p += group;
    }
    if (ep.activate) {
      // The band's rows are contiguous in y and still in cache.
      float* out = y + band * g.q;
      const int64_t n = (band_end - band) * g.q;
      const typename Ops::V alpha = Ops::set1(ep.alpha);
      store_row<Ops>(out, n, [&](int64_t i, int64_t len) {
        return activate<Ops>(ep.activation, load_part<Ops>(out, i, len, 0.0f), alpha);
      });
    }
  }
}

template <class Ops, int kStride, int kStrideH, int kR, int kS>
void depthwise_forward_as(const ConvGeometry& g, const float* x, const float* w, const ConvEpilogue& ep,
                          float* y) {
  const int64_t planes = g.n * g.k;
  if (planes == 0 || g.p == 0 || g.q == 0) return;
  const int64_t multiplier = g.k / g.c;
  const int64_t taps = g.r * g.s;
  const int64_t outputs = planes * g.p * g.q;
  const int64_t grain = kDepthwiseGrain / taps > 0 ? kDepthwiseGrain / taps : 1;
  const int threads = minidnn::threads_for(outputs, grain);
  int64_t chunks = 1;  // row chunks per plane
  if (threads > 1 && planes < kItemsPerThread * threads) {
    chunks = (kItemsPerThread * threads + planes - 1) / planes;
    if (chunks > g.p) chunks = g.p;
  }
  const Bands bands = plan_bands(g);
  // One band's scratch per thread, taken here: an allocation failure throws
  // before any thread starts.
  float* scratch = minidnn::cpu::gemm_scratch(0, threads * bands.scratch_floats);
  minidnn::parallel(threads, [&](int t, int nt) {
    const int64_t items = planes * chunks;
    float* own = scratch + t * bands.scratch_floats;
    // fill_rows' padding, or the zero row the in-place tiles read.
    store_row<Ops>(own, bands.scratch_floats, [](int64_t, int64_t) { return Ops::zero(); });
    for (int64_t item = items * t / nt; item < items * (t + 1) / nt; ++item) {
      const int64_t plane = item / chunks, chunk = item % chunks;
      const int64_t n = plane / g.k, k = plane % g.k;
      const float* x_plane = x + (n * g.c + k / multiplier) * g.h * g.w;
      plane_rows<Ops, kStride, kStrideH, kR, kS>(g, bands, x_plane, w + k * taps, ep.bias != nullptr ? ep.bias[k] : 0.0f, ep,
                                       g.p * chunk / chunks, g.p * (chunk + 1) / chunks, own, y + plane * g.p * g.q);
    }
  });
}

// 3x3 and 5x5 kernels with tap rows one input row apart and stride_h 1 or
// 2 share input rows between a tile's output rows; other kernels run the
// general tile.
template <class Ops, int kStride, int kR, int kS>
void depthwise_forward_taps(const ConvGeometry& g, const float* x, const float* w, const ConvEpilogue& ep,
                            float* y) {
  if (g.dil_h == 1 && g.stride_h == 1) return depthwise_forward_as<Ops, kStride, 1, kR, kS>(g, x, w, ep, y);
  if (g.dil_h == 1 && g.stride_h == 2) return depthwise_forward_as<Ops, kStride, 2, kR, kS>(g, x, w, ep, y);
  depthwise_forward_as<Ops, kStride, 0, kR, kS>(g, x, w, ep, y);
}

template <class Ops, int kStride>
void depthwise_forward_stride(const ConvGeometry& g, const float* x, const float* w, const ConvEpilogue& ep,
                              float* y) {
  if (g.r == 3 && g.s == 3) return depthwise_forward_taps<Ops, kStride, 3, 3>(g, x, w, ep, y);
  if (g.r == 5 && g.s == 5) return depthwise_forward_taps<Ops, kStride, 5, 5>(g, x, w, ep, y);
  depthwise_forward_as<Ops, kStride, 0, 0, 0>(g, x, w, ep, y);
}

template <class Ops>
void depthwise_forward(const ConvGeometry& g, const float* x, const float* w, const ConvEpilogue& ep, float* y) {
  switch (g.stride_w) {
    case 1: return depthwise_forward_stride<Ops, 1>(g, x, w, ep, y);
    case 2: return depthwise_forward_stride<Ops, 2>(g, x, w, ep, y);
    default: return depthwise_forward_stride<Ops, 0>(g, x, w, ep, y);
  }
}

}  // namespace
