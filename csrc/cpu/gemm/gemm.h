// Single-precision GEMM on the CPU, the project's own (no BLAS):
//
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C  (+ bias[N])
//
// row-major, with leading dimensions and a transpose flag per operand.
// linear calls it directly; convolution and the recurrent family build on
// it, either through gemm() / gemm_packed_b() (B packed once, reused across
// calls or time steps) or through the microkernel on panels they pack
// themselves (GemmKernels::ukernel and the panel layout below).
//
// Panel layouts (what the microkernel reads):
//   A panel: mr rows x k, k-major: element (i, p) at a[p * mr + i].
//   B panel: k x nr columns, row stride ldb: element (p, j) at b[p * ldb + j];
//            a packed panel has ldb == nr and zero-padded columns.
//
// Results do not depend on the thread count: threads split only the output
// (M and N blocks), never K, and every element is accumulated in the same
// order whichever thread owns its tile.
#pragma once

#include <cstdint>

namespace minidnn::cpu {

// op(X) of a row-major matrix X: element (r, c) of op(X) is data[r * ld + c],
// or data[c * ld + r] when `trans`.
struct GemmOperand {
  const float* data;
  int64_t ld;
  bool trans;
};

// Work fused into the store of each output tile, after alpha * AB + beta * C.
struct GemmEpilogue {
  const float* bias = nullptr;  // (N,) added to every row, or null
};

// How the microkernel writes its mr x nr accumulator tile `acc` into C.
struct TileUpdate {
  float alpha;
  float beta;          // read only when `first`; beta == 0 never reads C (it may hold NaN)
  bool first;          // first K block: C = alpha*acc + beta*C; later ones: C += alpha*acc
  const float* bias;   // last K block only: adds bias[j] (offset to the tile's first column), or null
  // First K block only: adds row_bias[i] to row i of the tile (a
  // convolution's bias, per output channel), or null. Not with the
  // transposed store of the weight-rows route.
  const float* row_bias = nullptr;
};

// Cache blocking of one ISA's driver; mr x nr is its microkernel tile.
struct GemmBlocking {
  int mr;       // rows of the microkernel tile (broadcast from the A panel)
  int nr;       // columns of the microkernel tile (SIMD vectors across N)
  int lanes;    // floats per SIMD vector (1 on the portable path)
  int64_t kc;   // K per block: the A panel (mr x kc) stays in L1
  int64_t nc;   // N per block: the packed B block (kc x nc) stays in L2
  int64_t mc;   // M per block: the packed A block (mc x kc) stays in L3
};

// A microkernel tile: mr rows x nr columns.
struct GemmTile {
  int mr;
  int nr;
};

struct GemmKernels {
  GemmBlocking blocking;

  // The full GEMM. M, N, K >= 0; K == 0 gives beta * C (+ bias).
  void (*gemm)(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, GemmOperand b, float beta, float* c,
               int64_t ldc, const GemmEpilogue& ep);

  // B (K x N, as op(b)) packed into this ISA's panels: packed_b_floats(k, n)
  // floats at `packed`, reusable by gemm_packed_b for any M, A and C.
  void (*pack_b)(int64_t k, int64_t n, GemmOperand b, float* packed);
  void (*gemm_packed_b)(int64_t m, int64_t n, int64_t k, float alpha, GemmOperand a, const float* packed_b,
                        float beta, float* c, int64_t ldc, const GemmEpilogue& ep);

  // Panels [panel_begin, panel_end) (mr rows each) of op(A) (M x K) packed
  // for all of K, on the calling thread: K block pc (rows pc.. of K, kc of
  // them) at packed + pc * ceil(M / mr) * mr, its panel q at q * mr * kc
  // within; packed_a_floats(m, k) floats in all. For callers that drive the
  // microkernel over their own loop (a recurrent layer's persistent team).
  void (*pack_a)(int64_t m, int64_t k, GemmOperand a, int64_t panel_begin, int64_t panel_end, float* packed);

  // The register-blocked microkernel: the m x n corner (m <= mr, n <= nr) of
  // C += A panel (k x mr) * B panel (k x nr), written through `update`. With
  // a packed B panel (ldb == nr, zero-padded) full vectors are loaded; with
  // `b_exact` only the first n columns of each B row are read (B used in
  // place, e.g. an unpacked row-major matrix).
  void (*ukernel)(int64_t k, const float* a_panel, const float* b_panel, int64_t ldb, bool b_exact, float* c,
                  int64_t ldc, int m, int n, const TileUpdate& update);

  // `ukernel` with A read in place, unpacked: the m x k block of a
  // row-major matrix at `a` (element (i, p) at a[i * lda + p]); B as for
  // `ukernel`. For an A used once per call (a convolution's weight on few
  // output positions), where packing it would cost about as much as the
  // product.
  void (*ukernel_a_rows)(int64_t k, const float* a, int64_t lda, const float* b_panel, int64_t ldb, bool b_exact,
                         float* c, int64_t ldc, int m, int n, const TileUpdate& update);

  // C (m x n) = A B + beta * C (beta == 0 never reads C) with both operands
  // read in place along K: A m x k row-major (row stride lda), B given as
  // B^T, n x k row-major (row stride ldb). Dot products in the tiles of the
  // gemm's few-rows route, on the calling thread. For the few columns of a
  // product left over past whole vectors of the microkernel's tiles.
  void (*dot)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* bt, int64_t ldb, float beta,
              float* c, int64_t ldc);

  // `ukernel_a_rows` on a tile of another shape, `wide_tile` (m <= its mr,
  // n <= its nr; a packed B panel holds its nr columns): one vector wider
  // and fewer rows where the registers allow it (avx512: 9 x 48 against 14
  // x 32), so that a product of 48 columns (a 7x7 image's 49 positions
  // less the last) runs as one tile rather than a two-vector tile and a
  // one-vector one, whose one vector per 14 broadcasts is load-bound. Elsewhere the
  // same kernel and tile as ukernel_a_rows.
  GemmTile wide_tile;
  void (*ukernel_a_rows_wide)(int64_t k, const float* a, int64_t lda, const float* b_panel, int64_t ldb,
                              bool b_exact, float* c, int64_t ldc, int m, int n, const TileUpdate& update);
};

const GemmKernels& gemm_kernels_scalar();
const GemmKernels& gemm_kernels_avx2();
const GemmKernels& gemm_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const GemmKernels& gemm_kernels();

// Size of a packed B of the given table: ceil(K / kc) blocks, each of
// ceil(N / nr) panels of (rows of the block) x nr floats.
int64_t packed_b_floats(const GemmBlocking& blk, int64_t k, int64_t n);

// Size of an A packed by pack_a: ceil(M / mr) * mr * K floats.
int64_t packed_a_floats(const GemmBlocking& blk, int64_t m, int64_t k);

// Scratch for packing, 64-byte aligned, grown on demand and kept per calling
// thread (slot 0: the A block shared by a team, slot 1: the B blocks of its
// threads) so that repeated calls allocate nothing. Valid until the next
// call with the same slot on the same thread; throws std::bad_alloc.
float* gemm_scratch(int slot, int64_t floats);

}  // namespace minidnn::cpu
