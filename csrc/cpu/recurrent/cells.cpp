// The recurrent cells on the project's SGEMM: the two affine maps
// (x W_ih^T + b_ih, h W_hh^T + b_hh) into a gate buffer, then one fused
// pointwise kernel of the active ISA; the backwards recompute the gates,
// turn them into their gradients with one fused kernel, and finish with
// GEMMs (grad_x, grad_h, the weight gradients, and the bias gradients as a
// row of ones times the gate gradients: a fixed summation order). The GEMM
// splits only its output over threads, so every result is the same for any
// thread count.
#include <cstring>

#include "cpu/gemm/gemm.h"
#include "cpu/recurrent/recurrent.h"
#include "cpu/recurrent/recurrent_gemm.h"

namespace minidnn::cpu {
namespace {

using namespace recurrent_gemm;

void hidden_map(int64_t n, int64_t hs, int64_t cols, const float* h, const float* w_hh, const float* b_hh,
                float beta, float* gates, int64_t ldg) {
  matmul(n, cols, hs, {h, ld(hs), false}, {w_hh, ld(hs), true}, beta, gates, ld(ldg), b_hh);
}

float* ones_in(Scratch& s, int64_t n) {
  float* ones = s.take(n);
  for (int64_t i = 0; i < n; ++i) ones[i] = 1.0f;
  return ones;
}

}  // namespace

// ------------------------------------------------------------------ LSTM

void lstm_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const float* c,
               const CellWeights& w, float* h1, float* c1) {
  const int64_t cols = 4 * hs;
  Scratch s(Scratch::size(n * cols));
  float* gates = s.take(n * cols);
  input_map(n, in, cols, x, w.w_ih, w.b_ih, gates, cols);
  hidden_map(n, hs, cols, h, w.w_hh, w.b_hh, 1.0f, gates, cols);
  recurrent_kernels().lstm_forward(n, hs, gates, c, h1, c1);
}

void lstm_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* grad_c1,
                        const float* x, const float* h, const float* c, const CellWeights& w, float* grad_x,
                        float* grad_h, float* grad_c, const CellWeightGrads& gw) {
  const int64_t cols = 4 * hs;
  Scratch s(Scratch::size(n * cols) + Scratch::size(n));
  float* d = s.take(n * cols);
  float* ones = ones_in(s, n);
  input_map(n, in, cols, x, w.w_ih, w.b_ih, d, cols);
  hidden_map(n, hs, cols, h, w.w_hh, w.b_hh, 1.0f, d, cols);
  recurrent_kernels().lstm_backward(n, hs, d, c, grad_h1, grad_c1, grad_c);
  input_grads(n, in, cols, d, x, w.w_ih, ones, grad_x, gw.w_ih, gw.b_ih);
  matmul(n, hs, cols, {d, ld(cols), false}, {w.w_hh, ld(hs), false}, 0.0f, grad_h, ld(hs));
  matmul(cols, hs, n, {d, ld(cols), true}, {h, ld(hs), false}, 0.0f, gw.w_hh, ld(hs));
  if (gw.b_hh) {
    if (gw.b_ih) {
      std::memcpy(gw.b_hh, gw.b_ih, sizeof(float) * cols);
    } else {
      column_sums(n, cols, ones, d, cols, gw.b_hh);
    }
  }
}

// ------------------------------------------------------------------- GRU

namespace {

// gi, gh (n x 3hs) and, for linear_before_reset=False, rh = r * h (n x hs)
// with gh's n part W_hn rh + b_hn.
void gru_gates(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w,
               bool linear_before_reset, float* gi, float* gh, float* rh) {
  const int64_t cols = 3 * hs;
  input_map(n, in, cols, x, w.w_ih, w.b_ih, gi, cols);
  if (linear_before_reset) {
    hidden_map(n, hs, cols, h, w.w_hh, w.b_hh, 0.0f, gh, cols);
    return;
  }
  hidden_map(n, hs, 2 * hs, h, w.w_hh, w.b_hh, 0.0f, gh, cols);
  recurrent_kernels().gru_reset(n, hs, gi, gh, h, rh);
  hidden_map(n, hs, hs, rh, w.w_hh + 2 * hs * hs, w.b_hh ? w.b_hh + 2 * hs : nullptr, 0.0f, gh + 2 * hs, cols);
}

}  // namespace

void gru_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w,
              bool linear_before_reset, float* h1) {
  const int64_t cols = 3 * hs;
  Scratch s(2 * Scratch::size(n * cols) + Scratch::size(n * hs));
  float* gi = s.take(n * cols);
  float* gh = s.take(n * cols);
  float* rh = s.take(n * hs);
  gru_gates(n, in, hs, x, h, w, linear_before_reset, gi, gh, rh);
  recurrent_kernels().gru_forward(n, hs, gi, gh, h, h1, !linear_before_reset);
}

void gru_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x, const float* h,
                       const CellWeights& w, bool linear_before_reset, float* grad_x, float* grad_h,
                       const CellWeightGrads& gw) {
  const int64_t cols = 3 * hs;
  Scratch s(2 * Scratch::size(n * cols) + 2 * Scratch::size(n * hs) + Scratch::size(n));
  float* gi = s.take(n * cols);
  float* gh = s.take(n * cols);
  float* rh = s.take(n * hs);
  float* d_rh = s.take(n * hs);
  float* ones = ones_in(s, n);
  const RecurrentKernels& k = recurrent_kernels();
  gru_gates(n, in, hs, x, h, w, linear_before_reset, gi, gh, rh);
  k.gru_backward(n, hs, gi, gh, h, grad_h1, grad_h, !linear_before_reset);
  if (linear_before_reset) {
    // gi, gh: the gradients of the two affine maps' outputs.
    input_grads(n, in, cols, gi, x, w.w_ih, ones, grad_x, gw.w_ih, gw.b_ih);
    matmul(n, hs, cols, {gh, ld(cols), false}, {w.w_hh, ld(hs), false}, 1.0f, grad_h, ld(hs));
    matmul(cols, hs, n, {gh, ld(cols), true}, {h, ld(hs), false}, 0.0f, gw.w_hh, ld(hs));
    if (gw.b_hh) column_sums(n, cols, ones, gh, cols, gw.b_hh);
    return;
  }
  // d_rh = da_n W_hn, then the r part of gi; gi is then the gradient of
  // both maps' outputs (h_r, h_z and W_hn rh + b_hn).
  const float* w_hn = w.w_hh + 2 * hs * hs;
  matmul(n, hs, hs, {gi + 2 * hs, ld(cols), false}, {w_hn, ld(hs), false}, 0.0f, d_rh, ld(hs));
  k.gru_backward_reset(n, hs, gi, gh, h, d_rh, grad_h);
  input_grads(n, in, cols, gi, x, w.w_ih, ones, grad_x, gw.w_ih, gw.b_ih);
  matmul(n, hs, 2 * hs, {gi, ld(cols), false}, {w.w_hh, ld(hs), false}, 1.0f, grad_h, ld(hs));
  matmul(2 * hs, hs, n, {gi, ld(cols), true}, {h, ld(hs), false}, 0.0f, gw.w_hh, ld(hs));
  matmul(hs, hs, n, {gi + 2 * hs, ld(cols), true}, {rh, ld(hs), false}, 0.0f, gw.w_hh + 2 * hs * hs, ld(hs));
  if (gw.b_hh) {
    if (gw.b_ih) {
      std::memcpy(gw.b_hh, gw.b_ih, sizeof(float) * cols);
    } else {
      column_sums(n, cols, ones, gi, cols, gw.b_hh);
    }
  }
}

// ------------------------------------------------------------------- RNN

void rnn_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w, bool relu,
              float* h1) {
  input_map(n, in, hs, x, w.w_ih, w.b_ih, h1, hs);
  hidden_map(n, hs, hs, h, w.w_hh, w.b_hh, 1.0f, h1, hs);
  recurrent_kernels().rnn_forward(n, hs, h1, relu);
}

void rnn_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x, const float* h,
                       const CellWeights& w, bool relu, float* grad_x, float* grad_h, const CellWeightGrads& gw) {
  Scratch s(Scratch::size(n * hs) + Scratch::size(n));
  float* d = s.take(n * hs);
  float* ones = ones_in(s, n);
  input_map(n, in, hs, x, w.w_ih, w.b_ih, d, hs);
  hidden_map(n, hs, hs, h, w.w_hh, w.b_hh, 1.0f, d, hs);
  recurrent_kernels().rnn_backward(n, hs, d, grad_h1, relu);
  input_grads(n, in, hs, d, x, w.w_ih, ones, grad_x, gw.w_ih, gw.b_ih);
  matmul(n, hs, hs, {d, ld(hs), false}, {w.w_hh, ld(hs), false}, 0.0f, grad_h, ld(hs));
  matmul(hs, hs, n, {d, ld(hs), true}, {h, ld(hs), false}, 0.0f, gw.w_hh, ld(hs));
  if (gw.b_hh) {
    if (gw.b_ih) {
      std::memcpy(gw.b_hh, gw.b_ih, sizeof(float) * hs);
    } else {
      column_sums(n, hs, ones, d, hs, gw.b_hh);
    }
  }
}

}  // namespace minidnn::cpu
