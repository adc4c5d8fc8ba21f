// The recurrent layers, one direction of one layer a call (recurrent.h):
// the input map of all T steps as one GEMM; per step the hidden map on
// W_hh packed once (gemm_packed_b) and the cell's fused gate kernel. The
// backwards walk the steps in reverse with the same gate kernels as the
// cells' backwards (on a copy of the cached pre-activations, which they
// overwrite with gate gradients), keep every step's gate gradients, and
// after the loop form grad_x and each weight gradient as one GEMM over all
// T * N rows. Threads split only GEMM outputs and the gate kernels' rows,
// so every result is the same for any thread count.
#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "cpu/recurrent/recurrent.h"
#include "cpu/recurrent/recurrent_gemm.h"

namespace minidnn::cpu {
namespace {

using namespace recurrent_gemm;

// op(B) (k x n) packed once into the active ISA's panels, for the T
// products of a time loop (gemm() would pack it again at every step), in
// floats(k, n) floats of the caller's scratch.
class PackedB {
 public:
  PackedB(int64_t k, int64_t n, GemmOperand b, Scratch& scratch)
      : kern_(gemm_kernels()), k_(k), n_(n), data_(scratch.take(packed_b_floats(kern_.blocking, k, n))) {
    kern_.pack_b(k, n, b, data_);
  }
  static int64_t floats(int64_t k, int64_t n) {
    return Scratch::size(packed_b_floats(gemm_kernels().blocking, k, n));
  }
  // C (m x n, stride ldc) = A (m x k, stride lda) op(B) + beta C (+ bias).
  void multiply(int64_t m, const float* a, int64_t lda, float beta, float* c, int64_t ldc,
                const float* bias = nullptr) const {
    GemmEpilogue ep;
    ep.bias = bias;
    kern_.gemm_packed_b(m, n_, k_, 1.0f, {a, ld(lda), false}, data_, beta, c, ld(ldc), ep);
  }

 private:
  const GemmKernels& kern_;
  int64_t k_, n_;
  float* data_;
};

// W_hh^T (H x cols) from row `first` of W_hh: the forward's hidden map.
PackedB hidden_map_weights(const float* w_hh, int64_t hs, int64_t first, int64_t cols, Scratch& scratch) {
  return PackedB(hs, cols, {w_hh + first * hs, ld(hs), true}, scratch);
}
// W_hh (cols x H) from row `first`: gate gradients to grad_h.
PackedB hidden_grad_weights(const float* w_hh, int64_t hs, int64_t first, int64_t cols, Scratch& scratch) {
  return PackedB(cols, hs, {w_hh + first * hs, ld(hs), false}, scratch);
}

// The time order and the state slots of recurrent.h.
struct Steps {
  const LayerShape& s;
  int64_t block() const { return s.n * s.hs; }
  // The time index of the i-th step the forward runs.
  int64_t time(int64_t i) const { return s.reverse ? s.steps - 1 - i : i; }
  int64_t read_slot(int64_t t) const { return s.reverse ? t + 1 : t; }
  int64_t write_slot(int64_t t) const { return s.reverse ? t : t + 1; }
  // The first of the T states the steps read, in time order.
  int64_t first_read_slot() const { return s.reverse ? 1 : 0; }
  int64_t initial_slot() const { return s.reverse ? s.steps : 0; }
};

void copy_or_zero(const float* src, int64_t floats, float* dst) {
  if (src) {
    std::memcpy(dst, src, sizeof(float) * floats);
  } else {
    std::fill(dst, dst + floats, 0.0f);
  }
}

// grad_h += the gradient of y at step t.
void add_output_grad(const LayerOutputGrad& g, int64_t t, int64_t n, int64_t hs, float* grad_h) {
  if (!g.grad_y) return;
  for (int64_t row = 0; row < n; ++row) {
    const float* src = g.grad_y + (t * n + row) * g.ld_grad_y;
    float* dst = grad_h + row * hs;
    for (int64_t j = 0; j < hs; ++j) dst[j] += src[j];
  }
}

float* ones(Scratch& scratch, int64_t n) {
  float* b = scratch.take(n);
  std::fill(b, b + n, 1.0f);
  return b;
}

// grad_b_hh equals grad_b_ih when both maps' outputs enter the gates summed.
void summed_bias_grad(int64_t rows, int64_t cols, const float* ones, const float* d, const CellWeightGrads& gw) {
  if (!gw.b_hh) return;
  if (gw.b_ih) {
    std::memcpy(gw.b_hh, gw.b_ih, sizeof(float) * cols);
  } else {
    column_sums(rows, cols, ones, d, cols, gw.b_hh);
  }
}

// The LSTM's and RNN's backward: per step (in reverse) the gate kernel
// turns a copy of the step's pre-activations into their gradients d_t given
// grad_h, and grad_h becomes d_t W_hh; then grad_x and the weight
// gradients from all the d_t at once.
template <class GateBackward>
void summed_maps_backward(const LayerShape& s, int64_t cols, const float* x, const CellWeights& w,
                          const float* h_states, const float* pre, const LayerOutputGrad& g, float* grad_x,
                          float* grad_h0, const CellWeightGrads& gw, const GateBackward& gate_backward) {
  const Steps st{s};
  const int64_t rows = s.steps * s.n, step = s.n * cols;
  Scratch scratch(Scratch::size(rows * cols) + Scratch::size(st.block()) + PackedB::floats(cols, s.hs) +
                  Scratch::size(rows));
  float* d = scratch.take(rows * cols);
  float* grad_h = scratch.take(st.block());
  copy_or_zero(g.grad_h_n, st.block(), grad_h);
  const PackedB w_hh = hidden_grad_weights(w.w_hh, s.hs, 0, cols, scratch);
  for (int64_t i = s.steps - 1; i >= 0; --i) {
    const int64_t t = st.time(i);
    add_output_grad(g, t, s.n, s.hs, grad_h);
    float* dt = d + t * step;
    std::memcpy(dt, pre + t * step, sizeof(float) * step);
    gate_backward(t, dt, grad_h);
    w_hh.multiply(s.n, dt, cols, 0.0f, grad_h, s.hs);
  }
  std::memcpy(grad_h0, grad_h, sizeof(float) * st.block());
  const float* one = ones(scratch, rows);
  input_grads(rows, s.in, cols, d, x, w.w_ih, one, grad_x, gw.w_ih, gw.b_ih);
  matmul(cols, s.hs, rows, {d, ld(cols), true}, {h_states + st.first_read_slot() * st.block(), ld(s.hs), false},
         0.0f, gw.w_hh, ld(s.hs));
  summed_bias_grad(rows, cols, one, d, gw);
}

}  // namespace

// ------------------------------------------------------------------ LSTM

void lstm_layer(const LayerShape& s, const float* x, const CellWeights& w, const float* h0, const float* c0,
                float* h_states, float* c_states, float* gates) {
  const Steps st{s};
  const int64_t cols = 4 * s.hs, block = st.block();
  input_map(s.steps * s.n, s.in, cols, x, w.w_ih, w.b_ih, gates, cols);
  copy_or_zero(h0, block, h_states + st.initial_slot() * block);
  copy_or_zero(c0, block, c_states + st.initial_slot() * block);
  Scratch scratch(PackedB::floats(s.hs, cols));
  const PackedB w_hh = hidden_map_weights(w.w_hh, s.hs, 0, cols, scratch);
  const RecurrentKernels& k = recurrent_kernels();
  for (int64_t i = 0; i < s.steps; ++i) {
    const int64_t t = st.time(i), read = st.read_slot(t) * block, write = st.write_slot(t) * block;
    float* g = gates + t * s.n * cols;
    w_hh.multiply(s.n, h_states + read, s.hs, 1.0f, g, cols, w.b_hh);
    k.lstm_forward(s.n, s.hs, g, c_states + read, h_states + write, c_states + write);
  }
}

void lstm_layer_backward(const LayerShape& s, const float* x, const CellWeights& w, const float* h_states,
                         const float* c_states, const float* gates, const LayerOutputGrad& g, const float* grad_c_n,
                         float* grad_x, float* grad_h0, float* grad_c0, const CellWeightGrads& gw) {
  const Steps st{s};
  const int64_t block = st.block();
  // At least one float: with an empty batch data() would be null, which
  // memcpy must not get even for zero bytes.
  std::vector<float> grad_c(static_cast<size_t>(std::max<int64_t>(block, 1)));
  copy_or_zero(grad_c_n, block, grad_c.data());
  const RecurrentKernels& k = recurrent_kernels();
  // grad_c is the gradient of the step's new cell state going in and of
  // its old one coming out: the kernel reads each element before it
  // writes it.
  summed_maps_backward(s, 4 * s.hs, x, w, h_states, gates, g, grad_x, grad_h0, gw,
                       [&](int64_t t, float* d, const float* grad_h) {
                         k.lstm_backward(s.n, s.hs, d, c_states + st.read_slot(t) * block, grad_h, grad_c.data(),
                                         grad_c.data());
                       });
  std::memcpy(grad_c0, grad_c.data(), sizeof(float) * block);
}

// ------------------------------------------------------------------- RNN

void rnn_layer(const LayerShape& s, const float* x, const CellWeights& w, bool relu, const float* h0,
               float* h_states, float* pre) {
  const Steps st{s};
  const int64_t block = st.block();
  input_map(s.steps * s.n, s.in, s.hs, x, w.w_ih, w.b_ih, pre, s.hs);
  copy_or_zero(h0, block, h_states + st.initial_slot() * block);
  Scratch scratch(PackedB::floats(s.hs, s.hs));
  const PackedB w_hh = hidden_map_weights(w.w_hh, s.hs, 0, s.hs, scratch);
  const RecurrentKernels& k = recurrent_kernels();
  for (int64_t i = 0; i < s.steps; ++i) {
    const int64_t t = st.time(i);
    float* a = pre + t * block;
    float* h = h_states + st.write_slot(t) * block;
    w_hh.multiply(s.n, h_states + st.read_slot(t) * block, s.hs, 1.0f, a, s.hs, w.b_hh);
    std::memcpy(h, a, sizeof(float) * block);
    k.rnn_forward(s.n, s.hs, h, relu);
  }
}

void rnn_layer_backward(const LayerShape& s, const float* x, const CellWeights& w, bool relu, const float* h_states,
                        const float* pre, const LayerOutputGrad& g, float* grad_x, float* grad_h0,
                        const CellWeightGrads& gw) {
  const RecurrentKernels& k = recurrent_kernels();
  summed_maps_backward(s, s.hs, x, w, h_states, pre, g, grad_x, grad_h0, gw,
                       [&](int64_t, float* d, const float* grad_h) { k.rnn_backward(s.n, s.hs, d, grad_h, relu); });
}

// ------------------------------------------------------------------- GRU

void gru_layer(const LayerShape& s, const float* x, const CellWeights& w, bool linear_before_reset, const float* h0,
               float* h_states, float* gi, float* gh, float* rh) {
  const Steps st{s};
  const int64_t hs = s.hs, cols = 3 * hs, block = st.block(), step = s.n * cols;
  input_map(s.steps * s.n, s.in, cols, x, w.w_ih, w.b_ih, gi, cols);
  copy_or_zero(h0, block, h_states + st.initial_slot() * block);
  // linear_before_reset=False: the r and z rows of W_hh on h, then W_hn on r * h.
  const int64_t h_cols = linear_before_reset ? cols : 2 * hs;
  Scratch scratch(PackedB::floats(hs, h_cols) + PackedB::floats(hs, hs));
  const PackedB w_h = hidden_map_weights(w.w_hh, hs, 0, h_cols, scratch);
  std::optional<PackedB> w_hn;
  if (!linear_before_reset) w_hn.emplace(hidden_map_weights(w.w_hh, hs, 2 * hs, hs, scratch));
  const RecurrentKernels& k = recurrent_kernels();
  for (int64_t i = 0; i < s.steps; ++i) {
    const int64_t t = st.time(i);
    const float* h = h_states + st.read_slot(t) * block;
    float* gi_t = gi + t * step;
    float* gh_t = gh + t * step;
    w_h.multiply(s.n, h, hs, 0.0f, gh_t, cols, w.b_hh);
    if (w_hn) {
      float* rh_t = rh + t * block;
      k.gru_reset(s.n, hs, gi_t, gh_t, h, rh_t);
      w_hn->multiply(s.n, rh_t, hs, 0.0f, gh_t + 2 * hs, cols, w.b_hh ? w.b_hh + 2 * hs : nullptr);
    }
    k.gru_forward(s.n, hs, gi_t, gh_t, h, h_states + st.write_slot(t) * block, !linear_before_reset);
  }
}

void gru_layer_backward(const LayerShape& s, const float* x, const CellWeights& w, bool linear_before_reset,
                        const float* h_states, const float* gi, const float* gh, const float* rh,
                        const LayerOutputGrad& g, float* grad_x, float* grad_h0, const CellWeightGrads& gw) {
  const Steps st{s};
  const int64_t hs = s.hs, cols = 3 * hs, block = st.block(), step = s.n * cols, rows = s.steps * s.n;
  // gi's copy becomes the gradient of x W_ih^T + b_ih at every step; gh's,
  // with linear_before_reset, that of h W_hh^T + b_hh (kept for all steps),
  // else only the kernels' workspace for one step (the gradient of the
  // hidden maps' outputs is then gi's).
  const int64_t d_gh_floats = linear_before_reset ? rows * cols : step, h_cols = linear_before_reset ? cols : 2 * hs;
  Scratch scratch(Scratch::size(rows * cols) + Scratch::size(d_gh_floats) + 3 * Scratch::size(block) +
                  PackedB::floats(h_cols, hs) + PackedB::floats(hs, hs) + Scratch::size(rows));
  float* d_gi = scratch.take(rows * cols);
  float* d_gh = scratch.take(d_gh_floats);
  float* grad_h = scratch.take(block);
  float* grad_prev = scratch.take(block);
  float* d_rh = scratch.take(block);
  copy_or_zero(g.grad_h_n, block, grad_h);
  const PackedB w_h = hidden_grad_weights(w.w_hh, hs, 0, h_cols, scratch);
  std::optional<PackedB> w_hn;
  if (!linear_before_reset) w_hn.emplace(hidden_grad_weights(w.w_hh, hs, 2 * hs, hs, scratch));
  const RecurrentKernels& k = recurrent_kernels();
  for (int64_t i = s.steps - 1; i >= 0; --i) {
    const int64_t t = st.time(i);
    const float* h = h_states + st.read_slot(t) * block;
    add_output_grad(g, t, s.n, hs, grad_h);
    float* dgi = d_gi + t * step;
    float* dgh = d_gh + (linear_before_reset ? t * step : 0);
    std::memcpy(dgi, gi + t * step, sizeof(float) * step);
    std::memcpy(dgh, gh + t * step, sizeof(float) * step);
    k.gru_backward(s.n, hs, dgi, dgh, h, grad_h, grad_prev, !linear_before_reset);
    if (w_hn) {
      w_hn->multiply(s.n, dgi + 2 * hs, cols, 0.0f, d_rh, hs);
      k.gru_backward_reset(s.n, hs, dgi, dgh, h, d_rh, grad_prev);
      w_h.multiply(s.n, dgi, cols, 1.0f, grad_prev, hs);
    } else {
      w_h.multiply(s.n, dgh, cols, 1.0f, grad_prev, hs);
    }
    std::swap(grad_h, grad_prev);
  }
  std::memcpy(grad_h0, grad_h, sizeof(float) * block);
  const float* one = ones(scratch, rows);
  input_grads(rows, s.in, cols, d_gi, x, w.w_ih, one, grad_x, gw.w_ih, gw.b_ih);
  const float* h_read = h_states + st.first_read_slot() * block;
  if (linear_before_reset) {
    matmul(cols, hs, rows, {d_gh, cols, true}, {h_read, hs, false}, 0.0f, gw.w_hh, hs);
    if (gw.b_hh) column_sums(rows, cols, one, d_gh, cols, gw.b_hh);
    return;
  }
  matmul(2 * hs, hs, rows, {d_gi, cols, true}, {h_read, hs, false}, 0.0f, gw.w_hh, hs);
  matmul(hs, hs, rows, {d_gi + 2 * hs, cols, true}, {rh, hs, false}, 0.0f, gw.w_hh + 2 * hs * hs, hs);
  summed_bias_grad(rows, cols, one, d_gi, gw);
}

}  // namespace minidnn::cpu
