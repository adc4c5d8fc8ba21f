// Recurrent cells: the fused pointwise gate kernels each ISA variant fills
// in (recurrent_impl.h), and the cells built from them and the project's
// SGEMM (cells.cpp). PyTorch's gate order and weight shapes: w_ih (G*H, I),
// w_hh (G*H, H), with G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN).
//
// Every array is row-major and dense: x (N, I), h, c and their gradients
// (N, H), gate buffers (N, G*H).
#pragma once

#include <cstdint>
#include <functional>

namespace minidnn::cpu {

struct RecurrentKernels {
  // LSTM: gates hold the summed pre-activations x W_ih^T + b_ih + h W_hh^T
  // + b_hh; writes c1 = sig(f) c + sig(i) tanh(g) and h1 = sig(o) tanh(c1).
  void (*lstm_forward)(int64_t n, int64_t hs, const float* gates, const float* c, float* h1, float* c1);
  // lstm_forward of units [u_begin, u_end) of every row, on the calling
  // thread alone (a team splitting the units); u_begin a multiple of the
  // GEMM's panel width.
  void (*lstm_forward_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* gates,
                             const float* c, float* h1, float* c1);
  // Recomputes the forward from the pre-activations in `gates` and
  // overwrites them with their gradients; grad_c = dL/dc. grad_h1 or
  // grad_c1 null counts as zeros.
  void (*lstm_backward)(int64_t n, int64_t hs, float* gates, const float* c, const float* grad_h1,
                        const float* grad_c1, float* grad_c);
  // lstm_backward of units [u_begin, u_end) of every row, on the calling
  // thread alone (as lstm_forward_units).
  void (*lstm_backward_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* gates, const float* c,
                              const float* grad_h1, const float* grad_c1, float* grad_c);

  // GRU: gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, (N, 3H) each;
  // h1 = (1 - z) n + z h. With `reset_applied` (linear_before_reset=False)
  // gh's n part already is W_hn (r h) + b_hn and n = tanh(i_n + h_n);
  // otherwise n = tanh(i_n + r h_n).
  void (*gru_forward)(int64_t n, int64_t hs, const float* gi, const float* gh, const float* h, float* h1,
                      bool reset_applied);
  // rh = sig(i_r + h_r) * h: the input of W_hn when linear_before_reset=False.
  void (*gru_reset)(int64_t n, int64_t hs, const float* gi, const float* gh, const float* h, float* rh);
  // gru_forward and gru_reset of units [u_begin, u_end) of every row, on
  // the calling thread alone (as lstm_forward_units).
  void (*gru_forward_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* gi, const float* gh,
                            const float* h, float* h1, bool reset_applied);
  void (*gru_reset_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* gi, const float* gh,
                          const float* h, float* rh);
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
  // gru_backward and gru_backward_reset of units [u_begin, u_end) of every
  // row, on the calling thread alone (as lstm_forward_units).
  void (*gru_backward_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* gi, float* gh,
                             const float* h, const float* grad_h1, float* grad_h, bool reset_applied);
  void (*gru_backward_reset_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* gi,
                                   const float* gh, const float* h, const float* d_rh, float* grad_h);

  // RNN: a (N, H) pre-activations -> tanh(a) or relu(a), in place.
  void (*rnn_forward)(int64_t n, int64_t hs, float* a, bool relu);
  // h1 = tanh(a) or relu(a) for units [u_begin, u_end) of every row, on the
  // calling thread alone (as lstm_forward_units).
  void (*rnn_forward_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* a, float* h1,
                            bool relu);
  // a: pre-activations in, their gradients out.
  void (*rnn_backward)(int64_t n, int64_t hs, float* a, const float* grad_h1, bool relu);
  // rnn_backward of units [u_begin, u_end) of every row, on the calling
  // thread alone (as lstm_forward_units).
  void (*rnn_backward_units)(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* a,
                             const float* grad_h1, bool relu);
};

const RecurrentKernels& recurrent_kernels_scalar();
const RecurrentKernels& recurrent_kernels_avx2();
const RecurrentKernels& recurrent_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const RecurrentKernels& recurrent_kernels();

// ------------------------------------------------------------------ cells
// Biases may be null. Outputs are written whole; inputs are not modified.
// Scratch: runtime/scratch.h's recurrent_gates slot (G*N*H floats and a
// little more; from 16 rows on, where the weights are read in place
// (recurrent_gemm.h), twice that and x^T, h^T packed, and in the
// backwards x and h packed once more as the weight gradients' B), besides
// the GEMM's own (from 16 rows on, each thread of a backward's team packs
// d^T for its units' weight-gradient rows in its own GEMM scratch).

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

// ----------------------------------------------------------------- layers
// One direction of one layer over a whole sequence (layers.cpp): the input
// map of every step as one GEMM, then per step the hidden map (on W_hh
// packed once, or transposed with W_hh read in place where that fills more
// of the microkernel's lanes) and the fused gate kernel (the steps of the
// forwards and of the backwards on one team of threads, each owning some
// hidden units). x is
// (T, N, I), dense.
//
// The states of the T + 1 instants are kept time-indexed in `h_states`
// (and the LSTM's `c_states`), (T + 1, N, H) each: the state after step t
// in slot t + 1, the initial state in slot 0, for the forward direction;
// for the reverse one (steps T - 1 down to 0) the state after step t in
// slot t and the initial state in slot T. The state step t reads is thus
// slot t (forward) or t + 1 (reverse), and the T states read by the steps
// are one dense block: what the weight gradient of W_hh multiplies in one
// GEMM.
//
// The backwards take the forward's buffers read-only (a cache may be used
// again) and the gradient of y: grad_y + (t * N + row) * ld_grad_y the row
// of step t, or null for zeros; grad_h_n (grad_c_n) the gradient of the
// final state, or null. They write grad_x (T, N, I), the initial states'
// gradients (N, H) and the weight gradients, each whole; after the loop
// the weight gradients are one GEMM over all steps each.
//
// Scratch: the recurrent_gates slot holds W_hh packed (G*H*H floats, the
// hidden size rounded up to the GEMM's panel width: per gate in the
// forwards, which also pack h, N*H floats with N rounded up to the
// microkernel's height; or, where the hidden map is transposed, G*N*H
// floats and a packed h^T per thread instead) and, in the backwards, every step's gate gradients
// (T*N*G*H floats; the GRU's two maps' when linear_before_reset), kept for
// the calling thread's next call.

// Runs direction(d) for d in [0, directions) (1 or 2: a layer's forward
// and, when bidirectional, reverse direction). Two directions run at once,
// one on each of two threads, when the kernels have exactly two threads
// and each direction at least a grain of `work` (its multiply-adds); each
// then runs its kernels on its thread alone (OneThreadScope), else they
// run in turn, each on every thread. Either way a direction's results are
// those of any thread count. Each thread then keeps its own scratch.
void layer_directions(int directions, int64_t work, const std::function<void(int)>& direction);

struct LayerShape {
  int64_t steps, n, in, hs;
  bool reverse;
};

// The gradient of y at one direction's columns.
struct LayerOutputGrad {
  const float* grad_y;  // or null
  int64_t ld_grad_y;
  const float* grad_h_n;  // or null
};

// gates (T, N, 4H): the pre-activations of every step.
void lstm_layer(const LayerShape& s, const float* x, const CellWeights& w, const float* h0, const float* c0,
                float* h_states, float* c_states, float* gates);
void lstm_layer_backward(const LayerShape& s, const float* x, const CellWeights& w, const float* h_states,
                         const float* c_states, const float* gates, const LayerOutputGrad& g, const float* grad_c_n,
                         float* grad_x, float* grad_h0, float* grad_c0, const CellWeightGrads& gw);

// gi, gh (T, N, 3H): the two maps' outputs of every step; rh (T, N, H) r * h
// of every step when !linear_before_reset (the input of W_hn), else unused.
void gru_layer(const LayerShape& s, const float* x, const CellWeights& w, bool linear_before_reset, const float* h0,
               float* h_states, float* gi, float* gh, float* rh);
void gru_layer_backward(const LayerShape& s, const float* x, const CellWeights& w, bool linear_before_reset,
                        const float* h_states, const float* gi, const float* gh, const float* rh,
                        const LayerOutputGrad& g, float* grad_x, float* grad_h0, const CellWeightGrads& gw);

// pre (T, N, H): the pre-activations of every step.
void rnn_layer(const LayerShape& s, const float* x, const CellWeights& w, bool relu, const float* h0,
               float* h_states, float* pre);
void rnn_layer_backward(const LayerShape& s, const float* x, const CellWeights& w, bool relu, const float* h_states,
                        const float* pre, const LayerOutputGrad& g, float* grad_x, float* grad_h0,
                        const CellWeightGrads& gw);

}  // namespace minidnn::cpu
