// Recurrent cells: the fused pointwise gate kernels each ISA variant fills
// in (recurrent_impl.h), and the cells built from them and the project's
// SGEMM (cells.cpp). PyTorch's gate order and weight shapes: w_ih (G*H, I),
// w_hh (G*H, H), with G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN).
//
// Every array is row-major and dense: x (N, I), h, c and their gradients
// (N, H), gate buffers (N, G*H).
#pragma once

#include <cstdint>

namespace minidnn::cpu {

struct RecurrentKernels {
  // LSTM: gates hold the summed pre-activations x W_ih^T + b_ih + h W_hh^T
  // + b_hh; writes c1 = sig(f) c + sig(i) tanh(g) and h1 = sig(o) tanh(c1).
  void (*lstm_forward)(int64_t n, int64_t hs, const float* gates, const float* c, float* h1, float* c1);
  // Recomputes the forward from the pre-activations in `gates` and
  // overwrites them with their gradients; grad_c = dL/dc. grad_h1 or
  // grad_c1 null counts as zeros.
  void (*lstm_backward)(int64_t n, int64_t hs, float* gates, const float* c, const float* grad_h1,
                        const float* grad_c1, float* grad_c);

  // GRU: gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, (N, 3H) each;
  // h1 = (1 - z) n + z h. With `reset_applied` (linear_before_reset=False)
  // gh's n part already is W_hn (r h) + b_hn and n = tanh(i_n + h_n);
  // otherwise n = tanh(i_n + r h_n).
  void (*gru_forward)(int64_t n, int64_t hs, const float* gi, const float* gh, const float* h, float* h1,
                      bool reset_applied);
  // rh = sig(i_r + h_r) * h: the input of W_hn when linear_before_reset=False.
  void (*gru_reset)(int64_t n, int64_t hs, const float* gi, const float* gh, const float* h, float* rh);
  // Overwrites the pre-activations with the gradients of the two affine
  // maps' outputs and writes grad_h = z * grad_h1 (the direct path).
  // Without `reset_applied`: all of gi and gh. With it: only the z and n
  // parts of gi (the gradient of gh equals gi's there), the r part then
  // coming from gru_backward_reset.
  void (*gru_backward)(int64_t n, int64_t hs, float* gi, float* gh, const float* h, const float* grad_h1,
                       float* grad_h, bool reset_applied);
  // linear_before_reset=False, second stage: from d_rh = dL/d(r h), the
  // gradient of the r pre-activation into gi's r part (gh's r part still
  // holds its pre-activation), and grad_h += d_rh * r.
  void (*gru_backward_reset)(int64_t n, int64_t hs, float* gi, const float* gh, const float* h,
                             const float* d_rh, float* grad_h);

  // RNN: a (N, H) pre-activations -> tanh(a) or relu(a), in place.
  void (*rnn_forward)(int64_t n, int64_t hs, float* a, bool relu);
  // a: pre-activations in, their gradients out.
  void (*rnn_backward)(int64_t n, int64_t hs, float* a, const float* grad_h1, bool relu);
};

const RecurrentKernels& recurrent_kernels_scalar();
const RecurrentKernels& recurrent_kernels_avx2();
const RecurrentKernels& recurrent_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const RecurrentKernels& recurrent_kernels();

// ------------------------------------------------------------------ cells
// Biases may be null. Outputs are written whole; inputs are not modified.
// Scratch: runtime/scratch.h's recurrent_gates slot (G*N*H floats and a
// little more), besides the GEMM's own.

struct CellWeights {
  const float* w_ih;
  const float* w_hh;
  const float* b_ih;  // or null
  const float* b_hh;  // or null
};

// Gradients of the weights, written whole; a bias gradient may be null
// (its bias was None).
struct CellWeightGrads {
  float* w_ih;
  float* w_hh;
  float* b_ih;
  float* b_hh;
};

void lstm_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const float* c,
               const CellWeights& w, float* h1, float* c1);
void lstm_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* grad_c1,
                        const float* x, const float* h, const float* c, const CellWeights& w, float* grad_x,
                        float* grad_h, float* grad_c, const CellWeightGrads& gw);

void gru_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w,
              bool linear_before_reset, float* h1);
void gru_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x, const float* h,
                       const CellWeights& w, bool linear_before_reset, float* grad_x, float* grad_h,
                       const CellWeightGrads& gw);

void rnn_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w, bool relu,
              float* h1);
void rnn_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x, const float* h,
                       const CellWeights& w, bool relu, float* grad_x, float* grad_h, const CellWeightGrads& gw);

}  // namespace minidnn::cpu
