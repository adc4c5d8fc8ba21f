// The recurrent cells on the project's SGEMM: the two affine maps
// (x W_ih^T + b_ih, h W_hh^T + b_hh) into a gate buffer, then one fused
// pointwise kernel of the active ISA; the backwards recompute the gates,
// turn them into their gradients with one fused kernel, and finish with
// GEMMs (grad_x, grad_h, the weight gradients, and the bias gradients as a
// row of ones times the gate gradients: a fixed summation order). The GEMM
// splits only its output over threads, so every result is the same for any
// thread count.
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <utility>

#include "cpu/gemm/gemm.h"
#include "cpu/recurrent/recurrent.h"
#include "cpu/recurrent/recurrent_gemm.h"
#include "runtime/threads.h"

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

// The LSTM's and RNN's pre-activations x W_ih^T + b_ih + h W_hh^T + b_hh
// (n x gates * hs), then after(u_begin, u_end) for every unit (with the
// weights in place, on each thread for its units). Scratch:
// summed_maps_floats.
int64_t summed_maps_floats(int64_t n, int64_t in, int64_t hs, int gates) {
  return weights_in_place(n, in, hs) ? Scratch::size(gates * hs * n) + InPlaceMaps::packed_floats(in, n) +
                                           InPlaceMaps::packed_floats(hs, n)
                                     : 0;
}

template <class After>
void summed_maps(int64_t n, int64_t in, int64_t hs, int gates, const float* x, const float* h, const CellWeights& w,
                 float* pre, Scratch& s, const After& after) {
  const int64_t cols = gates * hs;
  if (!weights_in_place(n, in, hs)) {
    input_map(n, in, cols, x, w.w_ih, w.b_ih, pre, cols);
    hidden_map(n, hs, cols, h, w.w_hh, w.b_hh, 1.0f, pre, cols);
    after(0, hs);
    return;
  }
  InPlaceMaps maps(n, s.take(cols * n));
  const InPlaceTerm x_term{w.w_ih, in, maps.pack(x, in, s.take(InPlaceMaps::packed_floats(in, n)))};
  const InPlaceTerm h_term{w.w_hh, hs, maps.pack(h, hs, s.take(InPlaceMaps::packed_floats(hs, n)))};
  parallel(maps.threads(cols, in + hs), [&](int t, int nt) {
    const auto [u_begin, u_end] = maps.units(hs, t, nt);
    maps.gate_units({x_term, h_term}, hs, 0, gates, u_begin, u_end, w.b_ih, w.b_hh, pre, cols);
    after(u_begin, u_end);
  });
}

}  // namespace

// ------------------------------------------------------------------ LSTM

void lstm_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const float* c,
               const CellWeights& w, float* h1, float* c1) {
  const int64_t cols = 4 * hs;
  Scratch s(Scratch::size(n * cols) + summed_maps_floats(n, in, hs, 4));
  float* gates = s.take(n * cols);
  const RecurrentKernels& k = recurrent_kernels();
  summed_maps(n, in, hs, 4, x, h, w, gates, s, [&](int64_t u_begin, int64_t u_end) {
    k.lstm_forward_units(n, hs, u_begin, u_end, gates, c, h1, c1);
  });
}

void lstm_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* grad_c1,
                        const float* x, const float* h, const float* c, const CellWeights& w, float* grad_x,
                        float* grad_h, float* grad_c, const CellWeightGrads& gw) {
  const int64_t cols = 4 * hs;
  Scratch s(Scratch::size(n * cols) + Scratch::size(n) + summed_maps_floats(n, in, hs, 4));
  float* d = s.take(n * cols);
  float* ones = ones_in(s, n);
  summed_maps(n, in, hs, 4, x, h, w, d, s, [](int64_t, int64_t) {});
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
// with gh's n part W_hn rh + b_hn; then after(u_begin, u_end) for every
// unit. Scratch: gru_gates_floats.
int64_t gru_gates_floats(int64_t n, int64_t in, int64_t hs) {
  return weights_in_place(n, in, hs) ? Scratch::size(3 * hs * n) + InPlaceMaps::packed_floats(in, n) +
                                           2 * InPlaceMaps::packed_floats(hs, n)
                                     : 0;
}

template <class After>
void gru_gates(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w,
               bool linear_before_reset, float* gi, float* gh, float* rh, Scratch& s, const After& after) {
  const int64_t cols = 3 * hs;
  const RecurrentKernels& k = recurrent_kernels();
  if (weights_in_place(n, in, hs)) {
    InPlaceMaps maps(n, s.take(cols * n));
    const InPlaceTerm x_term{w.w_ih, in, maps.pack(x, in, s.take(InPlaceMaps::packed_floats(in, n)))};
    const InPlaceTerm h_term{w.w_hh, hs, maps.pack(h, hs, s.take(InPlaceMaps::packed_floats(hs, n)))};
    float* packed_rh = s.take(InPlaceMaps::packed_floats(hs, n));
    parallel(maps.threads(cols, in + hs), [&](int t, int nt) {
      const auto [u_begin, u_end] = maps.units(hs, t, nt);
      maps.gate_units({x_term}, hs, 0, 3, u_begin, u_end, w.b_ih, nullptr, gi, cols);
      maps.gate_units({h_term}, hs, 0, linear_before_reset ? 3 : 2, u_begin, u_end, w.b_hh, nullptr, gh, cols);
      if (!linear_before_reset) {
        k.gru_reset_units(n, hs, u_begin, u_end, gi, gh, h, rh);
#pragma omp barrier
        if (t == 0) maps.pack(rh, hs, packed_rh);
#pragma omp barrier
        // W_hn: rows 2 hs.. of W_hh, on r h.
        maps.gate_units({{w.w_hh, hs, packed_rh}}, hs, 2, 3, u_begin, u_end, w.b_hh, nullptr, gh, cols);
      }
      after(u_begin, u_end);
    });
    return;
  }
  input_map(n, in, cols, x, w.w_ih, w.b_ih, gi, cols);
  if (linear_before_reset) {
    hidden_map(n, hs, cols, h, w.w_hh, w.b_hh, 0.0f, gh, cols);
    after(0, hs);
    return;
  }
  hidden_map(n, hs, 2 * hs, h, w.w_hh, w.b_hh, 0.0f, gh, cols);
  k.gru_reset(n, hs, gi, gh, h, rh);
  hidden_map(n, hs, hs, rh, w.w_hh + 2 * hs * hs, w.b_hh ? w.b_hh + 2 * hs : nullptr, 0.0f, gh + 2 * hs, cols);
  after(0, hs);
}

}  // namespace

void gru_cell(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, const CellWeights& w,
              bool linear_before_reset, float* h1) {
  const int64_t cols = 3 * hs;
  Scratch s(2 * Scratch::size(n * cols) + Scratch::size(n * hs) + gru_gates_floats(n, in, hs));
  float* gi = s.take(n * cols);
  float* gh = s.take(n * cols);
  float* rh = s.take(n * hs);
  const RecurrentKernels& k = recurrent_kernels();
  gru_gates(n, in, hs, x, h, w, linear_before_reset, gi, gh, rh, s, [&](int64_t u_begin, int64_t u_end) {
    k.gru_forward_units(n, hs, u_begin, u_end, gi, gh, h, h1, !linear_before_reset);
  });
}

void gru_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x, const float* h,
                       const CellWeights& w, bool linear_before_reset, float* grad_x, float* grad_h,
                       const CellWeightGrads& gw) {
  const int64_t cols = 3 * hs;
  Scratch s(2 * Scratch::size(n * cols) + 2 * Scratch::size(n * hs) + Scratch::size(n) +
            gru_gates_floats(n, in, hs));
  float* gi = s.take(n * cols);
  float* gh = s.take(n * cols);
  float* rh = s.take(n * hs);
  float* d_rh = s.take(n * hs);
  float* ones = ones_in(s, n);
  const RecurrentKernels& k = recurrent_kernels();
  gru_gates(n, in, hs, x, h, w, linear_before_reset, gi, gh, rh, s, [](int64_t, int64_t) {});
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
  // The pre-activations in h1, turned into h1 in place.
  Scratch s(summed_maps_floats(n, in, hs, 1));
  const RecurrentKernels& k = recurrent_kernels();
  summed_maps(n, in, hs, 1, x, h, w, h1, s, [&](int64_t u_begin, int64_t u_end) {
    k.rnn_forward_units(n, hs, u_begin, u_end, h1, h1, relu);
  });
}

void rnn_cell_backward(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x, const float* h,
                       const CellWeights& w, bool relu, float* grad_x, float* grad_h, const CellWeightGrads& gw) {
  Scratch s(Scratch::size(n * hs) + Scratch::size(n) + summed_maps_floats(n, in, hs, 1));
  float* d = s.take(n * hs);
  float* ones = ones_in(s, n);
  summed_maps(n, in, hs, 1, x, h, w, d, s, [](int64_t, int64_t) {});
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
