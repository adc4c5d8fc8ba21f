// SGEMM written once over a SIMD vocabulary and instantiated by
// gemm_<isa>.cpp with that ISA's tile and blocking (GemmConfig); anonymous
// namespace as simd/README.md says.
//
// Loop nest of the packed path (Goto / BLIS, with the roles of the operands
// chosen for a row-major C whose rows are the SIMD direction):
//
//   for ic over M by MC            A block (MC x KC) packed, shared by the team (L3)
//     for pc over K by KC
//       for jc over N by NC        B block (KC x NC) packed per thread (L2)
//         for ir over MR panels    A panel (MR x KC) stays in L1
//           for jr over NR panels  B panel streams from L2
//             microkernel MR x NR: acc += A panel * B panel over KC
//
// The A panel is the operand broadcast one element at a time, so it is the
// one kept in L1; each k step streams one row of NR floats of the B panel
// (2 vectors) from L2, well within its bandwidth.
//
// Small problems take two other routes, chosen by shape only (never by the
// thread count, so results stay bit-identical across thread counts):
// * few rows of A and B not transposed: the microkernel reads B in place
//   (b_exact), as packing would cost more than the product itself;
// * very few rows of A, A not transposed and B transposed (x @ W^T of
//   linear at batch 1 to 8): dot products along K, both operands read in
//   place with unit stride (gemm_dot);
// * a few more rows of that form (up to 128: linear at small batch, an
//   LSTM step): the transpose C^T = W x^T, the weight's rows read in place
//   as the broadcast operand and only x packed (gemm_weight_rows).
#pragma once

#include <omp.h>

#include <cstdint>
#include <type_traits>

#include "cpu/gemm/gemm.h"
#include "cpu/simd/cache_line.h"
#include "runtime/threads.h"

namespace {

using minidnn::cpu::GemmBlocking;
using minidnn::cpu::GemmEpilogue;
using minidnn::cpu::GemmOperand;
using minidnn::cpu::TileUpdate;

inline int64_t gemm_min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Lanes of vector v of a row whose first n columns are valid: 0..W.
template <class Ops>
int lanes_of(int64_t n, int v) {
  const int64_t l = n - int64_t{v} * Ops::W;
  return l <= 0 ? 0 : (l >= Ops::W ? Ops::W : static_cast<int>(l));
}

// A vector of p[0, lanes) (zeros past it); touches nothing past lanes.
template <class Ops>
typename Ops::V load_lanes(const float* p, int lanes) {
  if (lanes == Ops::W) return Ops::load(p);
  return lanes > 0 ? Ops::load_tail(p, lanes, 0.0f) : Ops::zero();
}

template <class Ops>
void store_lanes(float* p, typename Ops::V v, int lanes) {
  if (lanes == Ops::W) {
    Ops::store(p, v);
  } else if (lanes > 0) {
    Ops::store_tail(p, v, lanes);
  }
}

// ---------------------------------------------------------------------------
// Microkernel: kRows x (kNV * W) accumulators in registers.
// ---------------------------------------------------------------------------

// One vector of an output row through `u`: r = alpha * acc (+ beta * C on
// the first K block, + C on later ones) (+ the row's bias, first K block)
// (+ bias), `lanes` of it written at `row`; `bias` is already offset to the
// vector's first column, `row_bias` to the row's (or null).
template <class Ops>
[[gnu::always_inline]] inline void update_vector(float* row, typename Ops::V acc, int lanes, const float* bias,
                                                 const float* row_bias, const TileUpdate& u) {
  using V = typename Ops::V;
  V r = Ops::mul(Ops::set1(u.alpha), acc);
  if (!u.first || u.beta != 0.0f) {
    const V old = load_lanes<Ops>(row, lanes);
    r = u.first ? Ops::fmadd(Ops::set1(u.beta), old, r) : Ops::add(r, old);
  }
  if (row_bias != nullptr) r = Ops::add(r, Ops::set1(*row_bias));
  if (bias != nullptr) r = Ops::add(r, load_lanes<Ops>(bias, lanes));
  store_lanes<Ops>(row, r, lanes);
}

// acc[i][v] of the tile goes to C row i, columns [v*W, v*W + W), the
// columns past n masked off (a vector with no lanes in the tile reads and
// writes nothing). Inlined, unrolled and without an early exit on such a
// vector, so that every acc[i][v] stays a register: with a `break` there
// GCC kept acc in memory and the masked-B kernel's K loop stored all 28
// accumulators of the avx512 tile to the stack on every step (a third of
// its speed).
template <class Ops, int kRows, int kNV>
[[gnu::always_inline]] inline void store_tile(typename Ops::V (&acc)[kRows][kNV], float* c, int64_t ldc, int n,
                                              const TileUpdate& u) {
#pragma GCC unroll 16
  for (int i = 0; i < kRows; ++i) {
    float* row = c + i * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) {
      update_vector<Ops>(row + v * Ops::W, acc[i][v], lanes_of<Ops>(n, v),
                         u.bias != nullptr ? u.bias + v * Ops::W : nullptr,
                         u.first && u.row_bias != nullptr ? u.row_bias + i : nullptr, u);
    }
  }
}

// The transposed store: the tile holds C^T (acc row i is column i of C, and
// its first n columns are rows of C), so it goes out through W x W register
// transposes (Cfg::transpose_tile) of a copy on the stack, each C row then
// written as for store_tile. `u.bias` is indexed by the tile's rows (C's
// columns). A few hundred cycles per tile, against kMR * kNV FMAs per k
// step over all of K.
template <class Cfg, int kRows, int kNV>
[[gnu::always_inline]] inline void store_tile_transposed(typename Cfg::Ops::V (&acc)[kRows][kNV], float* c,
                                                         int64_t ldc, int n, const TileUpdate& u) {
  using Ops = typename Cfg::Ops;
  constexpr int kW = Ops::W, kNR = kNV * kW;
  constexpr int kRowsPadded = (kRows + kW - 1) / kW * kW;
  alignas(64) float tile[kRowsPadded * kNR];
  for (int i = 0; i < kRowsPadded; ++i) {
    for (int v = 0; v < kNV; ++v) Ops::store(tile + i * kNR + v * kW, i < kRows ? acc[i][v] : Ops::zero());
  }
  alignas(64) float columns[kW * kW];
  for (int ib = 0; ib < kRows; ib += kW) {
    const int lanes = kRows - ib < kW ? kRows - ib : kW;
    for (int jb = 0; jb < n; jb += kW) {
      Cfg::transpose_tile(tile + ib * kNR + jb, kNR, columns, kW);
      for (int q = 0; q < kW && jb + q < n; ++q) {
        update_vector<Ops>(c + (jb + q) * ldc + ib, Ops::load(columns + q * kW), lanes,
                           u.bias != nullptr ? u.bias + ib : nullptr, nullptr, u);
      }
    }
  }
}

// How the K loop reads its B panel.
enum class BRead {
  packed,      // a zero-padded packed panel (ldb == NR): full vectors
  in_place,    // B in place, all NR columns of a row valid: full vectors, and
               // a prefetch ahead (rows ldb apart, often 4 KB or more, are
               // past what the hardware stride prefetcher follows)
  in_place_n,  // B in place, only the first n < NR columns readable: masked loads
};

// How the K loop reads A.
enum class ARead {
  packed,    // an A panel: element (i, p) at a[p * kMR + i]
  in_place,  // rows of a row-major matrix: element (i, p) at a[i * lda + p]
};

// How the tile is written: C's rows along the tile's rows (store_tile),
// or its transpose (store_tile_transposed, for gemm_weight_rows).
enum class CWrite { rows, transposed };

// The tile's K loop. Cfg::kMR is the A panel's row stride, kRows <= kMR the
// rows computed: edge tiles of M run a kernel of their own height rather
// than wasting FMAs on padding rows. The three B reads are separate
// instantiations, so that a full-width in-place tile (most of them, in the
// convolutions' tap GEMMs) loads without masks. `lda` is read only by the
// in-place A read.
constexpr int64_t kPrefetchRows = 8;

template <class Cfg, int kRows, int kNV, BRead kRead, ARead kARead = ARead::packed, CWrite kWrite = CWrite::rows>
void ukernel_rows(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int n,
                  const TileUpdate& u) {
  using Ops = typename Cfg::Ops;
  using V = typename Ops::V;
  constexpr int kMR = Cfg::kMR;
  constexpr int kLinesPerVector = Ops::W >= 16 ? 1 : 16 / Ops::W;  // vectors per 64-byte line
  V acc[kRows][kNV];
  for (int i = 0; i < kRows; ++i) {
    for (int v = 0; v < kNV; ++v) acc[i][v] = Ops::zero();
  }
  int lanes[kNV];
  for (int v = 0; v < kNV; ++v) lanes[v] = kRead == BRead::in_place_n ? lanes_of<Ops>(n, v) : Ops::W;
  for (int64_t p = 0; p < k; ++p) {
    if constexpr (kRead != BRead::packed) {
      for (int v = 0; v < kNV; v += kLinesPerVector) __builtin_prefetch(b + kPrefetchRows * ldb + v * Ops::W);
    }
    V bv[kNV];
    for (int v = 0; v < kNV; ++v) {
      // One masked load of 0..W lanes (load_lanes' branches are not needed:
      // lanes 0 reads nothing).
      bv[v] = kRead == BRead::in_place_n ? Ops::load_tail(b + v * Ops::W, lanes[v], 0.0f) : Ops::load(b + v * Ops::W);
    }
    for (int i = 0; i < kRows; ++i) {
      const V ai = Ops::set1(kARead == ARead::in_place ? a[i * lda] : a[i]);
      for (int v = 0; v < kNV; ++v) acc[i][v] = Ops::fmadd(ai, bv[v], acc[i][v]);
    }
    a += kARead == ARead::in_place ? 1 : kMR;
    b += ldb;
  }
  if constexpr (kWrite == CWrite::transposed) {
    store_tile_transposed<Cfg, kRows, kNV>(acc, c, ldc, n, u);
  } else {
    store_tile<Ops, kRows, kNV>(acc, c, ldc, n, u);
  }
}

// Picks the kernel of height `rows` (1..kMR) by compile-time recursion.
template <class Cfg, int kNV, BRead kRead, ARead kARead = ARead::packed, CWrite kWrite = CWrite::rows,
          int kRows = Cfg::kMR>
void ukernel_any_rows(int rows, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                      int64_t ldc, int n, const TileUpdate& u) {
  if constexpr (kRows > 1) {
    if (rows < kRows) {
      ukernel_any_rows<Cfg, kNV, kRead, kARead, kWrite, kRows - 1>(rows, k, a, lda, b, ldb, c, ldc, n, u);
      return;
    }
  }
  ukernel_rows<Cfg, kRows, kNV, kRead, kARead, kWrite>(k, a, lda, b, ldb, c, ldc, n, u);
}

// Cfg::HalfTail, where an ISA's Cfg names one: the configuration of a
// one-vector kernel of half-width vectors (the same A panel stride) for
// tiles of at most that many columns.
template <class Cfg, class = void>
struct HalfTailOf {
  using type = void;
};
template <class Cfg>
struct HalfTailOf<Cfg, std::void_t<typename Cfg::HalfTail>> {
  using type = typename Cfg::HalfTail;
};

// The one-vector kernel of Cfg (its kMR the A panel stride) on a tile of at
// most one vector of columns: B read packed, or in place with a partial
// vector.
template <class Cfg, ARead kA>
void ukernel_one_vector(int64_t k, const float* a, int64_t lda, const float* b_panel, int64_t ldb, bool b_exact,
                        float* c, int64_t ldc, int m, int n, const TileUpdate& u) {
  if (b_exact) {
    ukernel_any_rows<Cfg, 1, BRead::in_place_n, kA>(m, k, a, lda, b_panel, ldb, c, ldc, n, u);
  } else {
    ukernel_any_rows<Cfg, 1, BRead::packed, kA>(m, k, a, lda, b_panel, ldb, c, ldc, n, u);
  }
}

// The kernel for a tile of n columns of A read as kA says: a tile of at
// most W columns runs the one-vector kernel, since its other vectors would
// be FMAs on padding (a convolution of 196 positions has one such tile of 4
// columns after six full ones, 1/14 of its FMAs), and one of at most half
// of W the half-width kernel where the ISA has one; B read packed, in place
// whole, or in place with a partial last vector.
template <class Cfg, ARead kA>
void ukernel_by_columns(int64_t k, const float* a, int64_t lda, const float* b_panel, int64_t ldb, bool b_exact,
                        float* c, int64_t ldc, int m, int n, const TileUpdate& u) {
  using Ops = typename Cfg::Ops;
  constexpr int kNV = Cfg::kNV;
  constexpr int kNR = kNV * Ops::W;
  using Half = typename HalfTailOf<Cfg>::type;
  if constexpr (!std::is_void_v<Half>) {
    static_assert(Half::kMR == Cfg::kMR && Half::kNV == 1, "the half-width kernel reads the same A panels");
    if (n <= Half::Ops::W) {
      ukernel_one_vector<Half, kA>(k, a, lda, b_panel, ldb, b_exact, c, ldc, m, n, u);
      return;
    }
  }
  if (kNV > 1 && n <= Ops::W) {
    ukernel_one_vector<Cfg, kA>(k, a, lda, b_panel, ldb, b_exact, c, ldc, m, n, u);
  } else if (!b_exact) {
    ukernel_any_rows<Cfg, kNV, BRead::packed, kA>(m, k, a, lda, b_panel, ldb, c, ldc, n, u);
  } else if (n == kNR) {
    ukernel_any_rows<Cfg, kNV, BRead::in_place, kA>(m, k, a, lda, b_panel, ldb, c, ldc, n, u);
  } else {
    ukernel_any_rows<Cfg, kNV, BRead::in_place_n, kA>(m, k, a, lda, b_panel, ldb, c, ldc, n, u);
  }
}

template <class Cfg>
void ukernel(int64_t k, const float* a_panel, const float* b_panel, int64_t ldb, bool b_exact, float* c, int64_t ldc,
             int m, int n, const TileUpdate& u) {
  ukernel_by_columns<Cfg, ARead::packed>(k, a_panel, 0, b_panel, ldb, b_exact, c, ldc, m, n, u);
}

// Rows of an A read in place that lie a multiple of 4 KB apart all fall in
// one set of the L1, which holds 8 lines of it on Zen 4 (12 on Sapphire
// Rapids): a tile of more of them evicts its own lines at every step of K
// (linear 64x1024x1024, W's rows as the tile's: 120-167 GFLOP/s, against
// 207 at K = 1008; bench/NOTES.md). Such a tile runs as two of about half
// its rows, each within the set's ways. Each output is the same chain of
// FMAs either way.
constexpr int64_t kL1SetAliasFloats = 1024;
constexpr int kL1SetRows = 8;

// tile(first, rows) over the rows [0, m) of a tile of A read in place, in
// one pass or in two (see kL1SetAliasFloats).
template <class Tile>
void in_place_row_passes(int64_t lda, int m, const Tile& tile) {
  if (lda % kL1SetAliasFloats == 0 && m > kL1SetRows) {
    const int half = (m + 1) / 2;
    tile(0, half);
    tile(half, m - half);
  } else {
    tile(0, m);
  }
}

template <class Cfg>
void ukernel_a_rows(int64_t k, const float* a, int64_t lda, const float* b_panel, int64_t ldb, bool b_exact, float* c,
                    int64_t ldc, int m, int n, const TileUpdate& u) {
  in_place_row_passes(lda, m, [&](int first, int rows) {
    TileUpdate part = u;
    if (part.row_bias != nullptr) part.row_bias += first;
    ukernel_by_columns<Cfg, ARead::in_place>(k, a + first * lda, lda, b_panel, ldb, b_exact, c + first * ldc, ldc,
                                            rows, n, part);
  });
}

// ---------------------------------------------------------------------------
// Packing.
// ---------------------------------------------------------------------------

// Rows [i0, i0 + rows) x columns [p0, p0 + kc) of op(A), A not
// transposed, into an A panel (element (i, p) at dst[p * kMR + i]); rows
// past `rows` are left unwritten, as the kernel of that height never reads
// them. `rows_readable` rows of op(A) exist from i0 on.
template <class Cfg>
void pack_a_panel(GemmOperand a, int64_t i0, int rows, int64_t rows_readable, int64_t p0, int64_t kc, float* dst) {
  constexpr int kMR = Cfg::kMR;
  constexpr int kW = Cfg::Ops::W;
  int64_t p0_scalar = 0;
  if constexpr (kW > 1 && kMR <= kW) {
    // A full panel, W columns at a time: W rows (all of them in op(A))
    // transposed in registers (Cfg::transpose_tile), then the first kMR
    // floats of each column copied out. The scalar loop below stores one
    // float per cycle with a stride of kMR floats; at M = 64 it cost a
    // sixth of an LSTM step's product, and more of grad_x = d W_ih.
    if (rows == kMR && rows_readable >= kW) {
      alignas(64) float tile[kW * kW];
      for (; p0_scalar + kW <= kc; p0_scalar += kW) {
        Cfg::transpose_tile(a.data + i0 * a.ld + p0 + p0_scalar, a.ld, tile, kW);
        float* out = dst + p0_scalar * kMR;
        for (int q = 0; q < kW; ++q) {
          for (int i = 0; i < kMR; ++i) out[q * kMR + i] = tile[q * kW + i];
        }
      }
    }
  }
  for (int i = 0; i < rows; ++i) {
    const float* src = a.data + (i0 + i) * a.ld + p0;
    for (int64_t p = p0_scalar; p < kc; ++p) dst[p * kMR + i] = src[p];
  }
}

// A panels [q_begin, q_end) of the m x K op(A) (panel q: rows q * kMR.. of
// it, at most m; `rows_readable` >= m rows exist) x columns [p0, p0 + kc),
// panel q at dst + q * kMR * kc.
//
// A transposed (op(A) rows are A's columns) is copied row of A by row of
// A, each row's floats of all the panels in turn, as whole and masked
// vectors. Panel by panel, each row of A (a.ld apart: often 1-4 KB, past
// what the hardware prefetchers follow) gave a panel a few floats of a line
// and was read again for the next panel, a K block's rows too many for L1
// (rows 4 KB apart all fall in one set): repacking W^T for each image of a
// 1x1 convolution's grad_x took 9% of its backward (14x14 256->1024 N=8, 1
// thread), after the copy of the panel's rows was vectorized.
template <class Cfg>
void pack_a_panels(GemmOperand a, int64_t m, int64_t rows_readable, int64_t q_begin, int64_t q_end, int64_t p0,
                   int64_t kc, float* dst) {
  using Ops = typename Cfg::Ops;
  constexpr int kMR = Cfg::kMR;
  constexpr int kW = Ops::W;
  if (!a.trans) {
    for (int64_t q = q_begin; q < q_end; ++q) {
      pack_a_panel<Cfg>(a, q * kMR, static_cast<int>(gemm_min(kMR, m - q * kMR)), rows_readable - q * kMR, p0, kc,
                        dst + q * kMR * kc);
    }
    return;
  }
  const int64_t i_begin = q_begin * kMR, i_end = gemm_min(m, q_end * kMR);
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = a.data + (p0 + p) * a.ld;
    for (int64_t i = i_begin; i < i_end; i += kCacheLineFloats) __builtin_prefetch(src + kPrefetchRows * a.ld + i);
    for (int64_t q = q_begin; q < q_end; ++q) {
      const int64_t i0 = q * kMR;
      const int rows = static_cast<int>(gemm_min(kMR, i_end - i0));
      float* out = dst + q * kMR * kc + p * kMR;
      for (int i = 0; i < rows; i += kW) {
        const int lanes = lanes_of<Ops>(rows - i, 0);
        store_lanes<Ops>(out + i, load_lanes<Ops>(src + i0 + i, lanes), lanes);
      }
    }
  }
}

// Rows [p0, p0 + kc) x columns [j0, j0 + cols) of op(B) into a B panel of
// kc x NR (element (p, j) at dst[p * NR + j]), columns past `cols` zero.
// A transposed B (the weight of linear, N x K) is transposed W x W floats
// at a time in registers (Cfg::transpose_tile); a scalar loop did one float
// per cycle, which at M = 64 cost as much as a third of the product.
template <class Cfg>
void pack_b_panel(GemmOperand b, int64_t p0, int64_t kc, int64_t j0, int cols, float* dst) {
  using Ops = typename Cfg::Ops;
  constexpr int kNV = Cfg::kNV;
  constexpr int kNR = kNV * Ops::W;
  if (!b.trans) {
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = b.data + (p0 + p) * b.ld + j0;
      for (int v = 0; v < kNV; ++v) {
        Ops::store(dst + p * kNR + v * Ops::W, load_lanes<Ops>(src + v * Ops::W, lanes_of<Ops>(cols, v)));
      }
    }
    return;
  }
  int j = 0;
  for (; j + Ops::W <= cols; j += Ops::W) {
    const float* src = b.data + (j0 + j) * b.ld + p0;
    int64_t p = 0;
    for (; p + Ops::W <= kc; p += Ops::W) Cfg::transpose_tile(src + p, b.ld, dst + p * kNR + j, kNR);
    for (; p < kc; ++p) {
      for (int jj = 0; jj < Ops::W; ++jj) dst[p * kNR + j + jj] = src[jj * b.ld + p];
    }
  }
  for (; j < cols; ++j) {
    const float* src = b.data + (j0 + j) * b.ld + p0;
    for (int64_t p = 0; p < kc; ++p) dst[p * kNR + j] = src[p];
  }
  if (cols < kNR) {
    for (int64_t p = 0; p < kc; ++p) {
      for (int jj = cols; jj < kNR; ++jj) dst[p * kNR + jj] = 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------
// Drivers.
// ---------------------------------------------------------------------------

// K == 0: C = beta * C (+ bias); beta == 0 never reads C.
template <class Ops>
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc, const GemmEpilogue& ep) {
  using V = typename Ops::V;
  const V vb = Ops::set1(beta);
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < n; j += Ops::W) {
      const int lanes = lanes_of<Ops>(n - j, 0);
      V r = beta != 0.0f ? Ops::mul(vb, load_lanes<Ops>(row + j, lanes)) : Ops::zero();
      if (ep.bias != nullptr) r = Ops::add(r, load_lanes<Ops>(ep.bias + j, lanes));
      store_lanes<Ops>(row + j, r, lanes);
    }
  }
}

// Where the B panels of one (pc, jc) block come from.
enum class BSource { pack, prepacked, in_place };

// FMAs worth waking a thread for (a few microseconds of work).
constexpr int64_t kGemmGrain = int64_t{1} << 18;

// Threads across N (each owns a contiguous range of NR panels: it packs only
// its own part of B); the rest across the MR panels of each A block.
inline int threads_across_n(int threads, int64_t n_panels) {
  for (int d = threads; d > 1; --d) {
    if (threads % d == 0 && d <= n_panels) return d;
  }
  return 1;
}

template <class Cfg>
void gemm_blocked(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, GemmOperand b, const float* packed_b,
                  BSource source, float beta, float* c, int64_t ldc, const GemmEpilogue& ep) {
  using Ops = typename Cfg::Ops;
  constexpr int kMR = Cfg::kMR;
  constexpr int kNR = Cfg::kNV * Ops::W;
  constexpr int64_t kKC = Cfg::kKC, kNC = Cfg::kNC, kMC = Cfg::kMC;
  static_assert(kNC % kNR == 0 && kMC % kMR == 0, "blocks hold whole panels");

  const int64_t n_panels = ceil_div(n, kNR);
  const int64_t n_padded = n_panels * kNR;
  const int threads = minidnn::threads_for(m * n * k, kGemmGrain);
  // Allocated before the parallel region: an allocation failure throws
  // here, not inside OpenMP (where it would terminate the process).
  float* a_block = minidnn::cpu::gemm_scratch(0, kMC * kKC);
  // Few rows (an LSTM step: M = N of the batch, K = H or 4H): A is packed
  // for all of K at once, each K block's panels after the previous one's,
  // so that the team meets at one barrier per call rather than at two per
  // K block (at M = 32, K = 1024 the backward step's six barriers took a
  // tenth of its time on two threads, and much more on a loaded machine).
  const bool whole_k = m <= kMC && ceil_div(m, kMR) * kMR * k <= kMC * kKC;
  float* b_blocks = source == BSource::pack ? minidnn::cpu::gemm_scratch(1, threads * kKC * kNC) : nullptr;

#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int nt = omp_get_num_threads();
    const int t = omp_get_thread_num();
    const int tn_count = threads_across_n(nt, n_panels);
    const int tm_count = nt / tn_count;
    const int tn = t % tn_count, tm = t / tn_count;
    const int64_t j_begin = n_panels * tn / tn_count * kNR;
    const int64_t j_end = gemm_min(n, n_panels * (tn + 1) / tn_count * kNR);
    float* b_block = source == BSource::pack ? b_blocks + t * kKC * kNC : nullptr;

    for (int64_t ic = 0; ic < m; ic += kMC) {
      const int64_t mc = gemm_min(kMC, m - ic);
      const int64_t a_panels = ceil_div(mc, kMR);
      for (int64_t pc = 0; pc < k; pc += kKC) {
        const int64_t kc = gemm_min(kKC, k - pc);
        const TileUpdate first_last{alpha, beta, pc == 0, pc + kc == k ? ep.bias : nullptr};
        // This K block's panels: at a_block, or at their place in the whole-K A.
        float* const a_pc = whole_k ? a_block + a_panels * kMR * pc : a_block;
        if (!whole_k || pc == 0) {
          for (int64_t pp = pc; pp < (whole_k ? k : pc + kc); pp += kKC) {
            const int64_t kp = gemm_min(kKC, k - pp);
            float* const dst = whole_k ? a_block + a_panels * kMR * pp : a_block;
            const GemmOperand a_block_rows{a.trans ? a.data + ic : a.data + ic * a.ld, a.ld, a.trans};
            pack_a_panels<Cfg>(a_block_rows, mc, m - ic, a_panels * t / nt, a_panels * (t + 1) / nt, pp, kp, dst);
          }
#pragma omp barrier
        }
        const int64_t q_begin = a_panels * tm / tm_count, q_end = a_panels * (tm + 1) / tm_count;
        for (int64_t jc = j_begin; jc < j_end; jc += kNC) {
          const int64_t nc = gemm_min(kNC, j_end - jc);
          const float* b_panels = nullptr;
          int64_t b_panel_stride = kc * kNR, ldb = kNR;
          if (source == BSource::pack) {
            for (int64_t j = 0; j < nc; j += kNR) {
              pack_b_panel<Cfg>(b, pc, kc, jc + j, static_cast<int>(gemm_min(kNR, nc - j)),
                                          b_block + j * kc);
            }
            b_panels = b_block;
          } else if (source == BSource::prepacked) {
            b_panels = packed_b + pc * n_padded + jc * kc;
          } else {
            b_panels = b.data + pc * b.ld + jc;
            b_panel_stride = kNR;
            ldb = b.ld;
          }
          for (int64_t q = q_begin; q < q_end; ++q) {
            const float* a_panel = a_pc + q * kMR * kc;
            const int rows = static_cast<int>(gemm_min(kMR, mc - q * kMR));
            for (int64_t j = 0; j < nc; j += kNR) {
              TileUpdate u = first_last;
              if (u.bias != nullptr) u.bias += jc + j;
              ukernel<Cfg>(kc, a_panel, b_panels + j / kNR * b_panel_stride, ldb, source == BSource::in_place,
                           c + (ic + q * kMR) * ldc + jc + j, ldc, rows, static_cast<int>(gemm_min(kNR, nc - j)),
                           u);
            }
          }
        }
        // The A block is repacked by the next (ic, pc) step; after the
        // last, the region's end is the barrier.
        if (!whole_k && (pc + kc < k || ic + mc < m)) {
#pragma omp barrier
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Dot-product route: A (M x K) and B^T (N x K) both row-major, few rows.
// ---------------------------------------------------------------------------

// C[i, j] for kRows rows of A and kDN rows of B^T (the rows past `cols` of
// B^T repeat its last valid row; their results are dropped).
template <class Ops, int kRows, int kDN>
void dot_tile(int64_t k, const float* a, int64_t lda, const float* bt, int64_t ldb, int cols, float* c, int64_t ldc,
              float alpha, float beta, const float* bias) {
  using V = typename Ops::V;
  const float* brow[kDN];
  for (int j = 0; j < kDN; ++j) brow[j] = bt + (j < cols ? j : cols - 1) * ldb;
  V acc[kRows][kDN];
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < kDN; ++j) acc[i][j] = Ops::zero();
  }
  auto step = [&](int64_t p, int lanes) {
    V bv[kDN];
    for (int j = 0; j < kDN; ++j) bv[j] = load_lanes<Ops>(brow[j] + p, lanes);
    for (int i = 0; i < kRows; ++i) {
      const V av = load_lanes<Ops>(a + i * lda + p, lanes);
      for (int j = 0; j < kDN; ++j) acc[i][j] = Ops::fmadd(av, bv[j], acc[i][j]);
    }
  };
  int64_t p = 0;
  for (; p + Ops::W <= k; p += Ops::W) step(p, Ops::W);
  if (p < k) step(p, static_cast<int>(k - p));
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < cols; ++j) {
      float r = alpha * Ops::reduce_add(acc[i][j]);
      if (beta != 0.0f) r += beta * c[i * ldc + j];
      if (bias != nullptr) r += bias[j];
      c[i * ldc + j] = r;
    }
  }
}

template <class Ops, int kDM, int kDN, int kRows = kDM>
void dot_tile_any_rows(int rows, int64_t k, const float* a, int64_t lda, const float* bt, int64_t ldb, int cols,
                       float* c, int64_t ldc, float alpha, float beta, const float* bias) {
  if constexpr (kRows > 1) {
    if (rows < kRows) {
      dot_tile_any_rows<Ops, kDM, kDN, kRows - 1>(rows, k, a, lda, bt, ldb, cols, c, ldc, alpha, beta, bias);
      return;
    }
  }
  dot_tile<Ops, kRows, kDN>(k, a, lda, bt, ldb, cols, c, ldc, alpha, beta, bias);
}

// A tile of exactly `cols` (1..kDN) columns: with fewer columns than the
// tile's, dot_tile would compute its repeats of B^T's last row.
template <class Ops, int kDM, int kDN>
void dot_tile_any_cols(int rows, int cols, int64_t k, const float* a, int64_t lda, const float* bt, int64_t ldb,
                       float* c, int64_t ldc, float beta) {
  if constexpr (kDN > 1) {
    if (cols < kDN) {
      dot_tile_any_cols<Ops, kDM, kDN - 1>(rows, cols, k, a, lda, bt, ldb, c, ldc, beta);
      return;
    }
  }
  dot_tile_any_rows<Ops, kDM, kDN>(rows, k, a, lda, bt, ldb, cols, c, ldc, 1.0f, beta, nullptr);
}

template <class Cfg>
void dot_block(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* bt, int64_t ldb,
               float beta, float* c, int64_t ldc) {
  constexpr int kDM = Cfg::kDotRows, kDN = Cfg::kDotCols;
  for (int64_t j = 0; j < n; j += kDN) {
    for (int64_t i = 0; i < m; i += kDM) {
      dot_tile_any_cols<typename Cfg::Ops, kDM, kDN>(static_cast<int>(gemm_min(kDM, m - i)),
                                                     static_cast<int>(gemm_min(kDN, n - j)), k, a + i * lda, lda,
                                                     bt + j * ldb, ldb, c + i * ldc + j, ldc, beta);
    }
  }
}

template <class Cfg>
void gemm_dot(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, GemmOperand b, float beta, float* c,
              int64_t ldc, const GemmEpilogue& ep) {
  constexpr int kDM = Cfg::kDotRows, kDN = Cfg::kDotCols;
  const int64_t groups = ceil_div(n, kDN);
  const int threads = minidnn::threads_for(m * n * k, kGemmGrain);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t j = g * kDN;
    const int cols = static_cast<int>(gemm_min(kDN, n - j));
    for (int64_t i = 0; i < m; i += kDM) {
      dot_tile_any_rows<typename Cfg::Ops, kDM, kDN>(static_cast<int>(gemm_min(kDM, m - i)), k, a.data + i * a.ld,
                                                     a.ld, b.data + j * b.ld, b.ld, cols, c + i * ldc + j, ldc, alpha,
                                                     beta, ep.bias != nullptr ? ep.bias + j : nullptr);
    }
  }
}

// ---------------------------------------------------------------------------
// Weight-rows route: x @ W^T (A = x, M x K, and B^T = W, N x K, both
// row-major) for a few rows of x, computed as its transpose C^T = W x^T.
// ---------------------------------------------------------------------------

// The packed path would pack all of W on every call (4 MB at 1024 x 1024,
// read and written once more than the product needs: a third of the time at
// M = 32). Here W is the broadcast operand, read in place a strip of MR of
// its rows at a time (each element loaded once per NR rows of x), and only
// x is packed: x^T, K x M, in NR-column panels over all of K, packed by the
// team (each thread a range of K) and shared. Threads split the strips of W,
// and each tile runs over all of K and goes out transposed
// (store_tile_transposed): every element of C is one chain of FMAs in K
// order whichever thread computes it.
template <class Cfg>
void weight_rows_tile(int rows, int64_t k, const float* w, int64_t ldw, const float* xt_panel, float* c, int64_t ldc,
                      int cols, const TileUpdate& u) {
  using Ops = typename Cfg::Ops;
  constexpr ARead kA = ARead::in_place;
  constexpr CWrite kT = CWrite::transposed;
  constexpr int kNR = Cfg::kNV * Ops::W;
  // A panel of at most W rows of x runs the one-vector kernel (see
  // ukernel_a_rows). The tile's rows are C's columns (the transposed store).
  in_place_row_passes(ldw, rows, [&](int first, int part_rows) {
    TileUpdate part = u;
    if (part.bias != nullptr) part.bias += first;
    if (Cfg::kNV > 1 && cols <= Ops::W) {
      ukernel_any_rows<Cfg, 1, BRead::packed, kA, kT>(part_rows, k, w + first * ldw, ldw, xt_panel, kNR, c + first,
                                                      ldc, cols, part);
    } else {
      ukernel_any_rows<Cfg, Cfg::kNV, BRead::packed, kA, kT>(part_rows, k, w + first * ldw, ldw, xt_panel, kNR,
                                                             c + first, ldc, cols, part);
    }
  });
}

template <class Cfg>
void gemm_weight_rows(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, GemmOperand b, float beta,
                      float* c, int64_t ldc, const GemmEpilogue& ep) {
  using Ops = typename Cfg::Ops;
  constexpr int kMR = Cfg::kMR;
  constexpr int kNR = Cfg::kNV * Ops::W;
  const int64_t x_panels = ceil_div(m, kNR);
  const int64_t strips = ceil_div(n, kMR);
  const int threads = minidnn::threads_for(m * n * k, kGemmGrain);
  // Before the parallel region, as in gemm_blocked.
  float* xt = minidnn::cpu::gemm_scratch(1, x_panels * kNR * k);
  // x^T: op(B')[p, j] = x[j, p], panel q (columns q * NR..) at q * k * NR.
  const GemmOperand x_transposed{a.data, a.ld, true};
  const TileUpdate update{alpha, beta, true, ep.bias};
  minidnn::parallel(threads, [&](int t, int nt) {
    // This thread's range of K, in whole SIMD widths (pack_b_panel's
    // register transposes), packed for every panel of x.
    const int64_t k_units = ceil_div(k, Ops::W);
    const int64_t p_begin = gemm_min(k, k_units * t / nt * Ops::W);
    const int64_t p_end = gemm_min(k, k_units * (t + 1) / nt * Ops::W);
    if (p_begin < p_end) {
      for (int64_t q = 0; q < x_panels; ++q) {
        pack_b_panel<Cfg>(x_transposed, p_begin, p_end - p_begin, q * kNR, static_cast<int>(gemm_min(kNR, m - q * kNR)),
                          xt + q * k * kNR + p_begin * kNR);
      }
    }
    // Only in a team of this call's own: with one thread the body runs
    // outside any region of ours, and a barrier there would bind to the
    // caller's team (a convolution's threads each running a GEMM of their
    // own), which the others never reach.
    if (nt > 1) {
#pragma omp barrier
    }
    for (int64_t s = strips * t / nt; s < strips * (t + 1) / nt; ++s) {
      const int64_t j0 = s * kMR;
      const int rows = static_cast<int>(gemm_min(kMR, n - j0));
      TileUpdate u = update;
      if (u.bias != nullptr) u.bias += j0;
      for (int64_t q = 0; q < x_panels; ++q) {
        weight_rows_tile<Cfg>(rows, k, b.data + j0 * b.ld, b.ld, xt + q * k * kNR, c + q * kNR * ldc + j0, ldc,
                              static_cast<int>(gemm_min(kNR, m - q * kNR)), u);
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Table entries.
// ---------------------------------------------------------------------------

template <class Cfg>
void gemm(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, GemmOperand b, float beta, float* c,
          int64_t ldc, const GemmEpilogue& ep) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    scale_c<typename Cfg::Ops>(m, n, beta, c, ldc, ep);
  } else if (m <= Cfg::kDotMaxM && !a.trans && b.trans) {
    gemm_dot<Cfg>(m, n, k, alpha, a, b, beta, c, ldc, ep);
  } else if (m <= Cfg::kWeightRowsMaxM && !a.trans && b.trans) {
    if constexpr (Cfg::kWeightRowsMaxM > 0) gemm_weight_rows<Cfg>(m, n, k, alpha, a, b, beta, c, ldc, ep);
  } else {
    const BSource source = m <= Cfg::kInPlaceMaxM && !b.trans ? BSource::in_place : BSource::pack;
    gemm_blocked<Cfg>(m, n, k, alpha, a, b, nullptr, source, beta, c, ldc, ep);
  }
}

// Packed B layout: block pc (rows [pc, pc + kc) of B) starts at pc * n_padded;
// its panel j (columns [j * NR, j * NR + NR)) at j * kc * NR within it.
template <class Cfg>
void pack_b(int64_t k, int64_t n, GemmOperand b, float* packed) {
  constexpr int kNR = Cfg::kNV * Cfg::Ops::W;
  const int64_t n_panels = ceil_div(n, kNR);
  const int64_t blocks = ceil_div(k, Cfg::kKC);
  const int threads = minidnn::threads_for(k * n, int64_t{1} << 16);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (int64_t q = 0; q < n_panels; ++q) {
      const int64_t pc = blk * Cfg::kKC;
      const int64_t kc = gemm_min(Cfg::kKC, k - pc);
      pack_b_panel<Cfg>(b, pc, kc, q * kNR, static_cast<int>(gemm_min(kNR, n - q * kNR)),
                                                packed + pc * n_panels * kNR + q * kc * kNR);
    }
  }
}

template <class Cfg>
void gemm_packed_b(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, const float* packed_b, float beta,
                   float* c, int64_t ldc, const GemmEpilogue& ep) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    scale_c<typename Cfg::Ops>(m, n, beta, c, ldc, ep);
    return;
  }
  gemm_blocked<Cfg>(m, n, k, alpha, a, GemmOperand{nullptr, 0, false}, packed_b, BSource::prepacked, beta, c, ldc,
                    ep);
}

template <class Cfg>
void pack_a(int64_t m, int64_t k, GemmOperand a, int64_t panel_begin, int64_t panel_end, float* packed) {
  constexpr int kMR = Cfg::kMR;
  const int64_t m_padded = ceil_div(m, kMR) * kMR;
  for (int64_t pc = 0; pc < k; pc += Cfg::kKC) {
    const int64_t kc = gemm_min(Cfg::kKC, k - pc);
    pack_a_panels<Cfg>(a, m, m, panel_begin, panel_end, pc, kc, packed + pc * m_padded);
  }
}

// WideCfg: the tile of ukernel_a_rows_wide (its kMR rows, kNV vectors;
// the rest as Cfg's).
template <class Cfg, class WideCfg = Cfg>
minidnn::cpu::GemmKernels make_gemm_kernels() {
  return minidnn::cpu::GemmKernels{
      GemmBlocking{Cfg::kMR, Cfg::kNV * Cfg::Ops::W, Cfg::Ops::W, Cfg::kKC, Cfg::kNC, Cfg::kMC},
      gemm<Cfg>,
      pack_b<Cfg>,
      gemm_packed_b<Cfg>,
      pack_a<Cfg>,
      ukernel<Cfg>,
      ukernel_a_rows<Cfg>,
      dot_block<Cfg>,
      minidnn::cpu::GemmTile{WideCfg::kMR, WideCfg::kNV * WideCfg::Ops::W},
      ukernel_a_rows<WideCfg>,
  };
}

}  // namespace
