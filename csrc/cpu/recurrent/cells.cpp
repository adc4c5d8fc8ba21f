// The recurrent cells on the project's SGEMM: the two affine maps
// (x W_ih^T + b_ih, h W_hh^T + b_hh) into a gate buffer, then one fused
// pointwise kernel of the active ISA; the backwards recompute the gates,
// turn them into their gradients with one fused kernel, and finish with
// products (grad_x, grad_h, the weight gradients, and the bias gradients as
// a row of ones times the gate gradients: a fixed summation order). From
// kInPlaceMinRows rows on, with the weights read in place, the backwards
// run as InPlaceBackward describes. Threads split only outputs, so every
// result is the same for any thread count.
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

// ------------------------------------------------ backwards, weights in place
// From kInPlaceMinRows rows on (where the forwards read the weights in
// place), a backward recomputes the gates as its forward does, each thread
// those of its units, and the same thread then turns them into their
// gradients d (the gate kernel of those units) and forms the weight and
// bias gradients' rows of those units: rows g*H + u of d^T x and d^T h,
// whose K is the batch (x and h packed once as the GEMM's B for the whole
// team; d^T packed by the GEMM, whole-vector copies), and their column
// sums. After that team has finished, grad_x = d W_ih and grad_h = d W_hh
// with both operands read in place: d's rows as the microkernel's
// broadcast rows, W's rows as its vector operand, each thread a range of
// the outputs' column panels. Against the GEMM calls of the general path,
// W_ih and W_hh (4 MB each for an LSTM at H = 512) are not packed for
// grad_x and grad_h, nor d four times, and the team forks twice rather
// than six times (bench/NOTES.md, branch rec5). Every element is one chain
// over the same K blocks whatever the split.
class InPlaceBackward {
 public:
  static int64_t floats(int64_t n, int64_t in, int64_t hs) {
    return Scratch::size(n) + packed_floats(n, in) + packed_floats(n, hs);
  }
  InPlaceBackward(int64_t n, int64_t in, int64_t hs, const float* x, const float* h, Scratch& s)
      : n_(n),
        in_(in),
        hs_(hs),
        ones_(ones_in(s, n)),
        x_(pack(x, in, s)),
        h_(pack(h, hs, s)) {}

  static int64_t packed_floats(int64_t n, int64_t k) {
    return Scratch::size(packed_b_floats(gemm_kernels().blocking, n, k));
  }
  // An (n x k) input of a weight gradient, packed as its B operand.
  const float* pack(const float* input, int64_t k, Scratch& s) const {
    float* packed = s.take(packed_b_floats(gemm_kernels().blocking, n_, k));
    gemm_kernels().pack_b(n_, k, {input, ld(k), false}, packed);
    return packed;
  }
  const float* packed_x() const { return x_; }
  const float* packed_h() const { return h_; }

  // The units' rows of a weight gradient, on the calling thread: rows
  // g*hs + u (gates [gate_begin, gate_end), units [u_begin, u_end)) of
  // grad_w (rows x k) = d^T input, d (n x ldd), input packed by pack(); and
  // of grad_b (or null) the column sums of d. grad_b_copy (or null) gets
  // grad_b's values (the LSTM's two biases share one gradient).
  void unit_rows(const float* d, int64_t ldd, int gate_begin, int gate_end, int64_t u_begin, int64_t u_end,
                 const float* packed_input, int64_t k, float* grad_w, float* grad_b, float* grad_b_copy) const {
    const OneThreadScope one_thread;
    const int64_t rows = u_end - u_begin;
    if (rows <= 0) return;
    for (int gate = gate_begin; gate < gate_end; ++gate) {
      const int64_t r = gate * hs_ + u_begin;
      gemm_kernels().gemm_packed_b(rows, k, n_, 1.0f, {d + r, ld(ldd), true}, packed_input, 0.0f, grad_w + r * k,
                                   ld(k), GemmEpilogue{});
      if (grad_b) {
        column_sums(n_, rows, ones_, d + r, ldd, grad_b + r);
        if (grad_b_copy) std::memcpy(grad_b_copy + r, grad_b + r, sizeof(float) * rows);
      }
    }
  }

  // The weight gradients of units [u_begin, u_end) of a cell whose two
  // maps share one gate gradient d (n x gates*hs): the LSTM's and RNN's.
  void shared_unit_rows(const float* d, int gates, int64_t u_begin, int64_t u_end,
                        const CellWeightGrads& gw) const {
    const int64_t cols = gates * hs_;
    unit_rows(d, cols, 0, gates, u_begin, u_end, x_, in_, gw.w_ih, gw.b_ih ? gw.b_ih : gw.b_hh,
              gw.b_ih ? gw.b_hh : nullptr);
    unit_rows(d, cols, 0, gates, u_begin, u_end, h_, hs_, gw.w_hh, nullptr, nullptr);
  }

  // Units [first, second) of thread t of nt: whole panels of the GEMM's
  // width, as the forwards' maps split them.
  std::pair<int64_t, int64_t> units(int t, int nt) const {
    const int64_t nr = gemm_kernels().blocking.nr, panels = (hs_ + nr - 1) / nr;
    return {std::min(hs_, panels * t / nt * nr), std::min(hs_, panels * (t + 1) / nt * nr)};
  }

  // out (n x cols, row stride ldo) = d W, or out += d W with
  // `accumulate`, for out's columns [j_begin, j_end) (j_begin a multiple
  // of the panel width), on the calling thread: d (n x k, stride ldd) and
  // W (k x cols, stride ldw) both read in place. A panel's K block of W
  // (kc x nr floats) is read from memory by its first row tile and from
  // cache by the others.
  void columns(int64_t k, const float* d, int64_t ldd, const float* w, int64_t ldw, bool accumulate, float* out,
               int64_t ldo, int64_t j_begin, int64_t j_end) const {
    const GemmKernels& kern = gemm_kernels();
    const GemmBlocking& blk = kern.blocking;
    for (int64_t j = j_begin; j < j_end; j += blk.nr) {
      const int cols = static_cast<int>(std::min<int64_t>(blk.nr, j_end - j));
      for (int64_t pc = 0; pc < k; pc += blk.kc) {
        const int64_t kc = std::min(blk.kc, k - pc);
        const TileUpdate u{1.0f, accumulate ? 1.0f : 0.0f, pc == 0, nullptr};
        for (int64_t i = 0; i < n_; i += blk.mr) {
          kern.ukernel_a_rows(kc, d + i * ldd + pc, ldd, w + pc * ldw + j, ldw, true, out + i * ldo + j, ldo,
                              static_cast<int>(std::min<int64_t>(blk.mr, n_ - i)), cols, u);
        }
      }
    }
  }

  // grad_x = d_x W_ih (K = k_x) and grad_h = d_h W_hh's first k_h rows
  // (or += with accumulate_h), the team splitting both outputs' column
  // panels as one range.
  void input_grads(const float* d_x, int64_t k_x, const float* d_h, int64_t k_h, int64_t ldd, const CellWeights& w,
                   float* grad_x, float* grad_h, bool accumulate_h) const {
    const int64_t nr = gemm_kernels().blocking.nr;
    const int64_t x_panels = (in_ + nr - 1) / nr, panels = x_panels + (hs_ + nr - 1) / nr;
    parallel(threads_for(n_ * (k_x * in_ + k_h * hs_), int64_t{1} << 18), [&](int t, int nt) {
      const int64_t p_begin = panels * t / nt, p_end = panels * (t + 1) / nt;
      columns(k_x, d_x, ldd, w.w_ih, in_, false, grad_x, in_, std::min(in_, p_begin * nr),
              std::min(in_, p_end * nr));
      columns(k_h, d_h, ldd, w.w_hh, hs_, accumulate_h, grad_h, hs_,
              std::min(hs_, std::max<int64_t>(0, p_begin - x_panels) * nr),
              std::min(hs_, std::max<int64_t>(0, p_end - x_panels) * nr));
    });
  }

 private:
  int64_t n_, in_, hs_;
  const float* ones_;
  const float* x_;
  const float* h_;
};

// The backward with the weights in place of a cell whose gates are the
// summed maps (LSTM, RNN): each thread recomputes its units' gates, turns
// them into gate gradients with unit_backward(d, u_begin, u_end), and forms
// those units' weight-gradient rows; then grad_x and grad_h.
template <class UnitBackward>
void summed_maps_backward_in_place(int64_t n, int64_t in, int64_t hs, int gates, const float* x, const float* h,
                                   const CellWeights& w, float* grad_x, float* grad_h, const CellWeightGrads& gw,
                                   UnitBackward unit_backward) {
  const int64_t cols = gates * hs;
  Scratch s(Scratch::size(n * cols) + InPlaceBackward::floats(n, in, hs) + summed_maps_floats(n, in, hs, gates));
  float* d = s.take(n * cols);
  const InPlaceBackward back(n, in, hs, x, h, s);
  summed_maps(n, in, hs, gates, x, h, w, d, s, [&](int64_t u_begin, int64_t u_end) {
    unit_backward(d, u_begin, u_end);
    back.shared_unit_rows(d, gates, u_begin, u_end, gw);
  });
  back.input_grads(d, cols, d, cols, cols, w, grad_x, grad_h, false);
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
  const RecurrentKernels& k = recurrent_kernels();
  if (weights_in_place(n, in, hs)) {
    summed_maps_backward_in_place(n, in, hs, 4, x, h, w, grad_x, grad_h, gw,
                                  [&](float* d, int64_t u_begin, int64_t u_end) {
                                    k.lstm_backward_units(n, hs, u_begin, u_end, d, c, grad_h1, grad_c1, grad_c);
                                  });
    return;
  }
  Scratch s(Scratch::size(n * cols) + Scratch::size(n));
  float* d = s.take(n * cols);
  float* ones = ones_in(s, n);
  summed_maps(n, in, hs, 4, x, h, w, d, s, [](int64_t, int64_t) {});
  k.lstm_backward(n, hs, d, c, grad_h1, grad_c1, grad_c);
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


// The GRU backward with the weights in place (InPlaceBackward). With
// linear_before_reset=False the r part of the gradient needs d_rh = da_n
// W_hn over all units first: the team forks once more for that product
// and once for the r part's gate kernel and the units' weight gradients.
void gru_cell_backward_in_place(int64_t n, int64_t in, int64_t hs, const float* grad_h1, const float* x,
                                const float* h, const CellWeights& w, bool linear_before_reset, float* grad_x,
                                float* grad_h, const CellWeightGrads& gw) {
  const int64_t cols = 3 * hs;
  Scratch s(2 * Scratch::size(n * cols) + 2 * Scratch::size(n * hs) + InPlaceBackward::floats(n, in, hs) +
            InPlaceBackward::packed_floats(n, hs) + gru_gates_floats(n, in, hs));
  float* gi = s.take(n * cols);
  float* gh = s.take(n * cols);
  float* rh = s.take(n * hs);
  float* d_rh = s.take(n * hs);
  const InPlaceBackward back(n, in, hs, x, h, s);
  const RecurrentKernels& k = recurrent_kernels();
  if (linear_before_reset) {
    gru_gates(n, in, hs, x, h, w, true, gi, gh, rh, s, [&](int64_t u_begin, int64_t u_end) {
      k.gru_backward_units(n, hs, u_begin, u_end, gi, gh, h, grad_h1, grad_h, false);
      back.unit_rows(gi, cols, 0, 3, u_begin, u_end, back.packed_x(), in, gw.w_ih, gw.b_ih, nullptr);
      back.unit_rows(gh, cols, 0, 3, u_begin, u_end, back.packed_h(), hs, gw.w_hh, gw.b_hh, nullptr);
    });
    // grad_h: z * grad_h1 from the gate kernel, plus gh W_hh.
    back.input_grads(gi, cols, gh, cols, cols, w, grad_x, grad_h, true);
    return;
  }
  gru_gates(n, in, hs, x, h, w, false, gi, gh, rh, s, [&](int64_t u_begin, int64_t u_end) {
    k.gru_backward_units(n, hs, u_begin, u_end, gi, gh, h, grad_h1, grad_h, true);
  });
  // d_rh = da_n W_hn (rows 2 hs.. of W_hh), the team splitting its columns.
  const float* w_hn = w.w_hh + 2 * hs * hs;
  parallel(threads_for(n * hs * hs, int64_t{1} << 18), [&](int t, int nt) {
    const auto [u_begin, u_end] = back.units(t, nt);
    back.columns(hs, gi + 2 * hs, cols, w_hn, hs, false, d_rh, hs, u_begin, u_end);
  });
  // gi is then the gradient of both maps' outputs (h_r, h_z and W_hn rh + b_hn).
  const float* packed_rh = back.pack(rh, hs, s);
  float* b_hh_copy = gw.b_ih ? gw.b_hh : nullptr;
  parallel(threads_for(n * cols * (in + hs), int64_t{1} << 18), [&](int t, int nt) {
    const auto [u_begin, u_end] = back.units(t, nt);
    k.gru_backward_reset_units(n, hs, u_begin, u_end, gi, gh, h, d_rh, grad_h);
    back.unit_rows(gi, cols, 0, 3, u_begin, u_end, back.packed_x(), in, gw.w_ih, gw.b_ih ? gw.b_ih : gw.b_hh,
                   b_hh_copy);
    back.unit_rows(gi, cols, 0, 2, u_begin, u_end, back.packed_h(), hs, gw.w_hh, nullptr, nullptr);
    back.unit_rows(gi, cols, 2, 3, u_begin, u_end, packed_rh, hs, gw.w_hh, nullptr, nullptr);
  });
  back.input_grads(gi, cols, gi, 2 * hs, cols, w, grad_x, grad_h, true);
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
  const RecurrentKernels& k = recurrent_kernels();
  if (weights_in_place(n, in, hs)) {
    gru_cell_backward_in_place(n, in, hs, grad_h1, x, h, w, linear_before_reset, grad_x, grad_h, gw);
    return;
  }
  Scratch s(2 * Scratch::size(n * cols) + 2 * Scratch::size(n * hs) + Scratch::size(n));
  float* gi = s.take(n * cols);
  float* gh = s.take(n * cols);
  float* rh = s.take(n * hs);
  float* d_rh = s.take(n * hs);
  float* ones = ones_in(s, n);
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
  const RecurrentKernels& k = recurrent_kernels();
  if (weights_in_place(n, in, hs)) {
    summed_maps_backward_in_place(n, in, hs, 1, x, h, w, grad_x, grad_h, gw,
                                  [&](float* d, int64_t u_begin, int64_t u_end) {
                                    k.rnn_backward_units(n, hs, u_begin, u_end, d, grad_h1, relu);
                                  });
    return;
  }
  Scratch s(Scratch::size(n * hs) + Scratch::size(n));
  float* d = s.take(n * hs);
  float* ones = ones_in(s, n);
  summed_maps(n, in, hs, 1, x, h, w, d, s, [](int64_t, int64_t) {});
  k.rnn_backward(n, hs, d, grad_h1, relu);
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
