// What the recurrent cells (cells.cpp) and layers (layers.cpp) share: the
// products of dense row-major matrices on the project's SGEMM, and their
// buffers carved from one per-thread scratch slot.
#pragma once

#include <cstdint>

#include "cpu/gemm/gemm.h"
#include "runtime/scratch.h"

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

}  // namespace minidnn::cpu::recurrent_gemm
