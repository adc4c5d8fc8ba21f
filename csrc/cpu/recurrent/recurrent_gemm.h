// What the recurrent cells (cells.cpp) and layers (layers.cpp) share: the
// products of dense row-major matrices on the project's SGEMM, and their
// buffers carved from one per-thread scratch slot.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "cpu/gemm/gemm.h"
#include "runtime/scratch.h"
#include "runtime/threads.h"

namespace minidnn::cpu::recurrent_gemm {

// Scratch of the recurrent_gates slot, carved into consecutive buffers
// (each rounded to 16 floats: 64-byte aligned). Kept from call to call, so
// that a layer's buffers (gate gradients of every step: T*N*G*H floats,
// W_hh packed) are neither allocated nor faulted in again: fresh pages
// cost a page fault and a clear per 4 KB, an eighth of the char-LSTM
// example's backward.
class Scratch {
 public:
  explicit Scratch(int64_t floats) : base_(thread_scratch(ScratchSlot::recurrent_gates, floats + 16)) {}
  float* take(int64_t floats) {
    float* p = base_ + used_;
    used_ += size(floats);
    return p;
  }
  static int64_t size(int64_t floats) { return (floats + 15) / 16 * 16; }

 private:
  float* base_;
  int64_t used_ = 0;
};

// A leading dimension the GEMM accepts for an extent that may be 0.
inline int64_t ld(int64_t extent) { return extent > 0 ? extent : 1; }

// C (m x n, ldc) = op(A) op(B) + beta C (+ bias).
inline void matmul(int64_t m, int64_t n, int64_t k, GemmOperand a, GemmOperand b, float beta, float* c, int64_t ldc,
                   const float* bias = nullptr) {
  GemmEpilogue ep;
  ep.bias = bias;
  gemm_kernels().gemm(m, n, k, 1.0f, a, b, beta, c, ldc, ep);
}

// The bias gradient: the column sums of d (n x cols, stride ldd) as ones(1 x n) @ d,
// a fixed summation order.
inline void column_sums(int64_t n, int64_t cols, const float* ones, const float* d, int64_t ldd, float* out) {
  matmul(1, cols, n, {ones, ld(n), false}, {d, ld(ldd), false}, 0.0f, out, ld(cols));
}

// gates (n, cols at stride ldg) = x W_ih^T + b_ih.
inline void input_map(int64_t n, int64_t in, int64_t cols, const float* x, const float* w_ih, const float* b_ih,
                      float* gates, int64_t ldg) {
  matmul(n, cols, in, {x, ld(in), false}, {w_ih, ld(in), true}, 0.0f, gates, ld(ldg), b_ih);
}

// The gradients common to every cell from the gate gradients d (n x G*hs):
// grad_x = d W_ih, grad_w_ih = d^T x, grad_b_ih = sum of d's rows.
inline void input_grads(int64_t n, int64_t in, int64_t cols, const float* d, const float* x, const float* w_ih,
                        const float* ones, float* grad_x, float* grad_w_ih, float* grad_b_ih) {
  matmul(n, in, cols, {d, ld(cols), false}, {w_ih, ld(in), false}, 0.0f, grad_x, ld(in));
  matmul(cols, in, n, {d, ld(cols), true}, {x, ld(in), false}, 0.0f, grad_w_ih, ld(in));
  if (grad_b_ih) column_sums(n, cols, ones, d, cols, grad_b_ih);
}

// ------------------------------------------------- weights read in place
// From kInPlaceMinRows rows of the batch on, the cells' affine maps and
// the layers' per-step hidden map are formed transposed, W x^T: the
// weights' rows (the gates' units) are the microkernel's broadcast rows,
// read where they lie (GemmKernels::ukernel_a_rows), and x^T, h^T (k x n,
// small) are packed as its vector operand. Against x W^T on the GEMM: a
// cell's W (4 MB each for an LSTM at H = 512) is not packed again on every
// call, and the units fill whole tiles where a batch fills few (64 rows
// fill 64 of 70, 32 of 42, 16 of 28 with the avx512 tile of 14 rows). A
// team splits the units in whole panels of the GEMM's width (so that the
// gate kernels' lanes do not depend on the split); each thread computes
// its units of every gate and transposes them into the row-major gate
// buffers, then runs the gate kernel of those units. Each output is one
// microkernel chain over the same K blocks whatever the split, so results
// do not depend on the thread count. Below it (latency-bound steps, N = 1)
// the GEMM's dot-product route (cells) and the batch as the broadcast rows
// (layers) waste less.
constexpr int64_t kInPlaceMinRows = 16;

inline bool weights_in_place(int64_t n, int64_t in, int64_t hs) {
  return n >= kInPlaceMinRows && in > 0 && hs > 0;
}

// One product's operands: W (rows x k, row-major) read in place, and x^T
// (k x n) packed as the GEMM's B panels.
struct InPlaceTerm {
  const float* w;
  int64_t k;
  const float* packed_xt;
  // Or W's rows of the call (gate_units' rows of one gate) packed by
  // pack_rows, read instead of w when set: the same microkernel chain over
  // the same K blocks, so the results agree to the bit.
  const float* packed_w = nullptr;
};

class InPlaceMaps {
 public:
  // out_t: (rows x n) of the caller's scratch, dense.
  InPlaceMaps(int64_t n, float* out_t) : kern_(gemm_kernels()), n_(n), out_t_(out_t) {}

  static int64_t packed_floats(int64_t k, int64_t n) {
    return Scratch::size(packed_b_floats(gemm_kernels().blocking, k, n));
  }
  // x (n x k, dense) packed transposed into packed_floats(k, n) floats.
  const float* pack(const float* x, int64_t k, float* packed) const {
    kern_.pack_b(k, n_, {x, ld(k), true}, packed);
    return packed;
  }

  // Units [first, second) of thread t of nt splitting hs units in whole
  // panels of the GEMM's width.
  std::pair<int64_t, int64_t> units(int64_t hs, int t, int nt) const {
    const int64_t nr = kern_.blocking.nr, panels = (hs + nr - 1) / nr;
    return {std::min(hs, panels * t / nt * nr), std::min(hs, panels * (t + 1) / nt * nr)};
  }

  // A team for products of (rows x k) by (k x n).
  int threads(int64_t rows, int64_t k) const { return threads_for(n_ * rows * k, int64_t{1} << 18); }

  // Gates [gate_begin, gate_end) of units [u_begin, u_end): rows
  // gate * hs + u of the sum of the terms' W times x^T, transposed into
  // out's columns of the same index (rows ldo apart) with the biases (a
  // null one counts as zeros): out = that, or out += that.
  void gate_units(std::initializer_list<InPlaceTerm> terms, int64_t hs, int gate_begin, int gate_end,
                  int64_t u_begin, int64_t u_end, const float* bias_a, const float* bias_b, float* out, int64_t ldo,
                  bool accumulate = false) const {
    for (int gate = gate_begin; gate < gate_end; ++gate) {
      rows(terms, gate * hs + u_begin, gate * hs + u_end);
      transpose(gate * hs + u_begin, gate * hs + u_end, bias_a, bias_b, out, ldo, accumulate);
    }
  }

  // out_t's rows [row_begin, row_end), written by the caller's own
  // products, into out: out[r, j] (=, +=) out_t[j, r] + bias_a[j] +
  // bias_b[j]. In 16 x 16 tiles: the tile's lines of out_t stay in L1, and
  // out's rows are written in 16 runs that each go forward.
  void transpose(int64_t row_begin, int64_t row_end, const float* bias_a, const float* bias_b, float* out,
                 int64_t ldo, bool accumulate) const {
    constexpr int64_t kTile = 16;
    float bias[kTile];
    for (int64_t r0 = 0; r0 < n_; r0 += kTile) {
      const int64_t r_end = std::min(n_, r0 + kTile);
      for (int64_t j0 = row_begin; j0 < row_end; j0 += kTile) {
        const int64_t len = std::min(kTile, row_end - j0);
        for (int64_t jj = 0; jj < len; ++jj) {
          bias[jj] = (bias_a ? bias_a[j0 + jj] : 0.0f) + (bias_b ? bias_b[j0 + jj] : 0.0f);
        }
        for (int64_t r = r0; r < r_end; ++r) {
          float* dst = out + r * ldo + j0;
          const float* src = out_t_ + j0 * n_ + r;
          if (accumulate) {
            for (int64_t jj = 0; jj < len; ++jj) dst[jj] += src[jj * n_] + bias[jj];
          } else {
            for (int64_t jj = 0; jj < len; ++jj) dst[jj] = src[jj * n_] + bias[jj];
          }
        }
      }
    }
  }

  // Rows [row_begin, row_end) of W (row-major, k columns) packed as the
  // GEMM's A panels, a matrix of their own: packed_rows_floats(row_end -
  // row_begin, k) floats, for InPlaceTerm::packed_w.
  void pack_rows(const float* w, int64_t k, int64_t row_begin, int64_t row_end, float* packed) const {
    const int64_t m = row_end - row_begin, mr = kern_.blocking.mr;
    kern_.pack_a(m, k, {w + row_begin * k, ld(k), false}, 0, (m + mr - 1) / mr, packed);
  }
  static int64_t packed_rows_floats(int64_t rows, int64_t k) {
    return packed_a_floats(gemm_kernels().blocking, rows, k);
  }

  // out_t's row j, n floats: for callers computing rows themselves.
  float* out_row(int64_t j) const { return out_t_ + j * n_; }

 private:
  // out_t rows [row_begin, row_end) = the sum of the terms' W rows times x^T.
  void rows(std::initializer_list<InPlaceTerm> terms, int64_t row_begin, int64_t row_end) const {
    const GemmBlocking& blk = kern_.blocking;
    const int64_t nr = blk.nr, n_padded = (n_ + nr - 1) / nr * nr;
    const int64_t m_padded = (row_end - row_begin + blk.mr - 1) / blk.mr * blk.mr;  // rows of a packed_w
    for (int64_t i = row_begin; i < row_end; i += blk.mr) {
      const int m = static_cast<int>(std::min<int64_t>(blk.mr, row_end - i));
      bool first = true;
      for (const InPlaceTerm& term : terms) {
        for (int64_t pc = 0; pc < term.k; pc += blk.kc) {
          const int64_t kc = std::min(blk.kc, term.k - pc);
          const TileUpdate u{1.0f, 0.0f, first, nullptr};
          for (int64_t j = 0; j < n_; j += nr) {
            const float* b = term.packed_xt + pc * n_padded + j * kc;
            float* c = out_t_ + i * n_ + j;
            const int cols = static_cast<int>(std::min(nr, n_ - j));
            if (term.packed_w) {
              kern_.ukernel(kc, term.packed_w + pc * m_padded + (i - row_begin) * kc, b, nr, false, c, n_, m, cols,
                            u);
            } else {
              kern_.ukernel_a_rows(kc, term.w + i * term.k + pc, term.k, b, nr, false, c, n_, m, cols, u);
            }
          }
          first = false;
        }
      }
    }
  }

  const GemmKernels& kern_;
  int64_t n_;
  float* out_t_;
};

}  // namespace minidnn::cpu::recurrent_gemm
