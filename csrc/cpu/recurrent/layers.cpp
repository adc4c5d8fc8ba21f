// The recurrent layers, one direction of one layer a call (recurrent.h):
// the input map of all T steps as one GEMM; per step the hidden map (on
// W_hh packed once, or at some batch sizes transposed with W_hh read in
// place) and the cell's fused gate kernel, the forward's steps all on one
// team of threads (TeamHiddenMap, TransposedHiddenMap). The backwards walk
// the steps in reverse with the same gate kernels as the cells' backwards
// (on a copy of the cached pre-activations, which they overwrite with gate
// gradients), keep every step's gate gradients, and after the loop form
// grad_x and each weight gradient as one GEMM over all T * N rows. Threads
// split only GEMM outputs and the gate kernels' rows and units, so every
// result is the same for any thread count. The two directions of a
// bidirectional layer may run at once, one a thread (layer_directions).
#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "cpu/gemm/gemm.h"
#include "cpu/recurrent/recurrent.h"
#include "cpu/recurrent/recurrent_gemm.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

using namespace recurrent_gemm;

// The team's barrier; none in a team of one, whose body runs on the
// calling thread, maybe inside the region of layer_directions' team (where
// the other thread runs the other direction; threads.h).
inline void team_barrier(int nt) {
  if (nt > 1) {
#pragma omp barrier
  }
}

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

// W_hh (cols x H) from row `first`: gate gradients to grad_h.
PackedB hidden_grad_weights(const float* w_hh, int64_t hs, int64_t first, int64_t cols, Scratch& scratch) {
  return PackedB(cols, hs, {w_hh + first * hs, ld(hs), false}, scratch);
}

// The hidden map of a forward time loop that one team of threads runs for
// all its steps, rather than a GEMM and a gate kernel each entering and
// leaving OpenMP at every step (at N = 64, H = 512 the gate kernel took
// 43 us of a 470 us LSTM step on two threads, 60 us on one). Thread t owns
// the hidden units of a contiguous range of the GEMM's column panels: it
// computes every gate's columns of h W_hh^T for those units (W_hh packed
// per gate, so that each gate's units start at a panel), then the gate
// kernel of those units on gates still in its cache. The team meets twice
// a step: once h_t is packed (each thread packs a share of h's row panels),
// and once h_{t+1} is whole. Each tile is the microkernel over the same K
// blocks as gemm_packed_b's, so results are those of any thread count.
class TeamHiddenMap {
 public:
  // `gates` gates of hs units: the gates * hs rows of W_hh (hs columns each)
  // from w_hh on; h has n rows.
  TeamHiddenMap(const float* w_hh, int64_t n, int64_t hs, int gates, Scratch& scratch)
      : kern_(gemm_kernels()),
        blk_(kern_.blocking),
        n_(n),
        hs_(hs),
        gates_(gates),
        row_panels_((n + blk_.mr - 1) / blk_.mr),
        unit_panels_((hs + blk_.nr - 1) / blk_.nr),
        gate_floats_(Scratch::size(packed_b_floats(blk_, hs, hs))),
        packed_w_(scratch.take(gates * gate_floats_)),
        packed_h_(scratch.take(packed_a_floats(blk_, n, hs))) {
    for (int gate = 0; gate < gates; ++gate) {
      kern_.pack_b(hs, hs, {w_hh + gate * hs * hs, ld(hs), true}, packed_w_ + gate * gate_floats_);
    }
  }
  static int64_t floats(int64_t n, int64_t hs, int gates) {
    const GemmBlocking& blk = gemm_kernels().blocking;
    return gates * Scratch::size(packed_b_floats(blk, hs, hs)) + Scratch::size(packed_a_floats(blk, n, hs));
  }
  int threads() const { return threads_for(n_ * gates_ * hs_ * hs_, int64_t{1} << 18); }

  // Thread t's block of the output: row panels [q_begin, q_end) x unit
  // panels [p_begin, p_end). The team splits the units while there are
  // panels enough (a GEMM's N split), the rows otherwise (H <= one panel).
  struct Share {
    int64_t q_begin, q_end, p_begin, p_end;
    int64_t row_begin, rows, unit_begin, unit_end;  // the same block in rows and units
  };
  Share share(int t, int nt) const {
    int across_units = nt;
    while (across_units > 1 && (nt % across_units != 0 || across_units > unit_panels_)) --across_units;
    const int tu = t % across_units, tr = t / across_units, across_rows = nt / across_units;
    Share sh{row_panels_ * tr / across_rows, row_panels_ * (tr + 1) / across_rows,
             unit_panels_ * tu / across_units, unit_panels_ * (tu + 1) / across_units, 0, 0, 0, 0};
    sh.row_begin = sh.q_begin * blk_.mr;
    sh.rows = std::min(n_, sh.q_end * blk_.mr) - sh.row_begin;
    sh.unit_begin = sh.p_begin * blk_.nr;
    sh.unit_end = std::min(hs_, sh.p_end * blk_.nr);
    return sh;
  }

  // Thread t's part of a step: out (+)= h W^T (+ bias) for its share (the
  // team meets once h is packed).
  void product(const float* h, int t, int nt, const Share& sh, const float* bias, float* out, int64_t ldo,
               bool accumulate) const {
    pack(h, t, nt);
    team_barrier(nt);
    multiply(sh, accumulate ? 1.0f : 0.0f, out, ldo, bias);
  }

 private:
  // Thread t's share of packing h (n x hs, dense) for the next multiply.
  void pack(const float* h, int t, int nt) const {
    kern_.pack_a(n_, hs_, {h, ld(hs_), false}, row_panels_ * t / nt, row_panels_ * (t + 1) / nt, packed_h_);
  }

  // A share of every gate: out[r, gate * hs + u] (rows ldo apart) =
  // (h W^T)[r, gate * hs + u] + beta * out (+ bias[gate * hs + u]).
  void multiply(const Share& sh, float beta, float* out, int64_t ldo, const float* bias) const {
    const int64_t mr = blk_.mr, nr = blk_.nr;
    for (int gate = 0; gate < gates_; ++gate) {
      for (int64_t pc = 0; pc < hs_; pc += blk_.kc) {
        const int64_t kc = std::min(blk_.kc, hs_ - pc);
        const bool last = pc + kc == hs_;
        const float* b_block = packed_w_ + gate * gate_floats_ + pc * unit_panels_ * nr;
        for (int64_t q = sh.q_begin; q < sh.q_end; ++q) {
          const float* a_panel = packed_h_ + pc * row_panels_ * mr + q * mr * kc;
          const int rows = static_cast<int>(std::min(mr, n_ - q * mr));
          for (int64_t p = sh.p_begin; p < sh.p_end; ++p) {
            const int64_t col = gate * hs_ + p * nr;
            const TileUpdate u{1.0f, beta, pc == 0, last && bias ? bias + col : nullptr};
            kern_.ukernel(kc, a_panel, b_block + p * kc * nr, nr, false, out + q * mr * ldo + col, ldo, rows,
                          static_cast<int>(std::min(nr, hs_ - p * nr)), u);
          }
        }
      }
    }
  }

  const GemmKernels& kern_;
  const GemmBlocking& blk_;
  int64_t n_, hs_;
  int gates_;
  int64_t row_panels_, unit_panels_, gate_floats_;
  float* packed_w_;
  float* packed_h_;
};

// The hidden map of a forward time loop computed transposed, W_hh h_t^T,
// with W_hh read in place (recurrent_gemm.h's InPlaceMaps). Thread t owns
// the units of a contiguous range of column panels, of every gate, and all
// rows. Each thread packs h_t^T for itself (n * hs floats: a copy per
// thread costs less than a meeting), so the team meets once a step, when
// h_{t+1} is whole. The interface is TeamHiddenMap's.
class TransposedHiddenMap {
 public:
  struct Share {
    int64_t row_begin, rows, unit_begin, unit_end;
  };

  TransposedHiddenMap(const float* w_hh, int64_t n, int64_t hs, int gates, Scratch& scratch)
      : maps_(n, scratch.take(gates * hs * n)),
        w_hh_(w_hh),
        n_(n),
        hs_(hs),
        gates_(gates),
        packed_h_(scratch.take(get_num_threads() * InPlaceMaps::packed_floats(hs, n))) {}
  // A copy of h^T per thread of any team (the GRU's W_hn map runs on the
  // team of its other gates).
  static int64_t floats(int64_t n, int64_t hs, int gates) {
    return Scratch::size(gates * hs * n) + get_num_threads() * InPlaceMaps::packed_floats(hs, n);
  }
  int threads() const { return threads_for(n_ * gates_ * hs_ * hs_, int64_t{1} << 18); }
  Share share(int t, int nt) const {
    const auto [unit_begin, unit_end] = maps_.units(hs_, t, nt);
    return {0, n_, unit_begin, unit_end};
  }
  void product(const float* h, int t, int, const Share& sh, const float* bias, float* out, int64_t ldo,
               bool accumulate) const {
    const float* packed = maps_.pack(h, hs_, packed_h_ + t * InPlaceMaps::packed_floats(hs_, n_));
    maps_.gate_units({{w_hh_, hs_, packed}}, hs_, 0, gates_, sh.unit_begin, sh.unit_end, bias, nullptr, out, ldo,
                     accumulate);
  }

 private:
  InPlaceMaps maps_;
  const float* w_hh_;
  int64_t n_, hs_;
  int gates_;
  float* packed_h_;
};

template <class Map>
struct MapKind {
  using type = Map;
};

// steps(MapKind<the hidden map's class for this batch>{}). Transposed
// where its tiles fill at least 1.5x the lanes that the batch as the
// tiles' rows fills (avx512 at 16 rows: 16 of 16 lanes, the one-vector
// tile of ukernel_a_rows, against 16 of 28 rows): the transposes into the
// gate buffers cost more than the lanes saved otherwise (measured, 1
// thread: at 32 rows and H = 256, 32 of 32 lanes against 32 of 42, 10%
// slower; at 64 rows and H = 512 as fast; bench/NOTES.md).
bool hidden_map_transposed(int64_t n, int64_t hs) {
  if (!weights_in_place(n, hs, hs)) return false;
  const GemmBlocking& blk = gemm_kernels().blocking;
  const int64_t half = blk.nr / 2;  // the one-vector tile of the kernels with two vectors a row
  const int64_t lanes = n <= half ? half : (n + blk.nr - 1) / blk.nr * blk.nr;
  const int64_t rows = (n + blk.mr - 1) / blk.mr * blk.mr;
  return 2 * rows >= 3 * lanes;
}

template <class Steps>
void with_hidden_map_kind(int64_t n, int64_t hs, const Steps& steps) {
  if (hidden_map_transposed(n, hs)) {
    steps(MapKind<TransposedHiddenMap>{});
  } else {
    steps(MapKind<TeamHiddenMap>{});
  }
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

// A forward time loop on one team: step(map, t, nt, share, time) for the
// steps in the direction's order, the team meeting after each (h_{t+1}
// whole), with the hidden map of `gates` gates from w_hh on.
template <class Step>
void forward_steps(const LayerShape& s, const float* w_hh, int gates, const Step& step) {
  with_hidden_map_kind(s.n, s.hs, [&](auto kind) {
    using Map = typename decltype(kind)::type;
    Scratch scratch(Map::floats(s.n, s.hs, gates));
    const Map map(w_hh, s.n, s.hs, gates, scratch);
    parallel(map.threads(), [&](int t, int nt) {
      const auto sh = map.share(t, nt);
      for (int64_t i = 0; i < s.steps; ++i) {
        step(map, t, nt, sh, Steps{s}.time(i));
        team_barrier(nt);
      }
    });
  });
}

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

// Two directions on two threads, one each, rather than in turn on both:
// one direction's steps split over two threads meet twice a step (h
// packed, h_{t+1} whole; the backward's GEMM and gate kernel fork and join
// once each a step), and at N = 32, H = 256 a step is a few tens of
// microseconds, while two directions need no meeting at all. Below the
// grain (a direction's multiply-adds) one fork costs more than it saves.
// With more threads each direction keeps the whole team in turn (two
// teams of half would need nested parallel regions).
void layer_directions(int directions, int64_t work, const std::function<void(int)>& direction) {
  constexpr int64_t kDirectionGrain = int64_t{1} << 16;
  if (directions != 2 || get_num_threads() != 2 || work < kDirectionGrain) {
    for (int d = 0; d < directions; ++d) direction(d);
    return;
  }
  // A failure (a scratch allocation) is carried out of the region.
  std::exception_ptr failure;
  parallel(2, [&](int t, int nt) {
    const OneThreadScope one_thread;
    for (int d = t; d < directions; d += nt) {
      try {
        direction(d);
      } catch (...) {
#pragma omp critical(minidnn_layer_directions_failure)
        failure = std::current_exception();
      }
    }
  });
  if (failure) std::rethrow_exception(failure);
}

// ------------------------------------------------------------------ LSTM

void lstm_layer(const LayerShape& s, const float* x, const CellWeights& w, const float* h0, const float* c0,
                float* h_states, float* c_states, float* gates) {
  const Steps st{s};
  const int64_t cols = 4 * s.hs, block = st.block();
  input_map(s.steps * s.n, s.in, cols, x, w.w_ih, w.b_ih, gates, cols);
  copy_or_zero(h0, block, h_states + st.initial_slot() * block);
  copy_or_zero(c0, block, c_states + st.initial_slot() * block);
  const RecurrentKernels& k = recurrent_kernels();
  forward_steps(s, w.w_hh, 4, [&](const auto& w_hh, int t, int nt, const auto& sh, int64_t step) {
    const int64_t mine = sh.row_begin * s.hs;  // the share's first row of the states
    const int64_t read = st.read_slot(step) * block, write = st.write_slot(step) * block;
    float* g = gates + step * s.n * cols;
    w_hh.product(h_states + read, t, nt, sh, w.b_hh, g, cols, true);
    k.lstm_forward_units(sh.rows, s.hs, sh.unit_begin, sh.unit_end, g + sh.row_begin * cols, c_states + read + mine,
                         h_states + write + mine, c_states + write + mine);
  });
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
  const RecurrentKernels& k = recurrent_kernels();
  forward_steps(s, w.w_hh, 1, [&](const auto& w_hh, int t, int nt, const auto& sh, int64_t step) {
    const int64_t mine = sh.row_begin * s.hs;
    float* a = pre + step * block;
    w_hh.product(h_states + st.read_slot(step) * block, t, nt, sh, w.b_hh, a, s.hs, true);
    k.rnn_forward_units(sh.rows, s.hs, sh.unit_begin, sh.unit_end, a + mine,
                        h_states + st.write_slot(step) * block + mine, relu);
  });
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
  const int64_t hs = s.hs, cols = 3 * hs, block = st.block(), step_floats = s.n * cols;
  input_map(s.steps * s.n, s.in, cols, x, w.w_ih, w.b_ih, gi, cols);
  copy_or_zero(h0, block, h_states + st.initial_slot() * block);
  // linear_before_reset=False: the r and z rows of W_hh on h, then W_hn on
  // r * h (which needs every unit of r: one more meeting per step).
  const int h_gates = linear_before_reset ? 3 : 2;
  const RecurrentKernels& k = recurrent_kernels();
  with_hidden_map_kind(s.n, hs, [&](auto kind) {
    using Map = typename decltype(kind)::type;
    Scratch scratch(Map::floats(s.n, hs, h_gates) + Map::floats(s.n, hs, 1));
    const Map w_h(w.w_hh, s.n, hs, h_gates, scratch);
    std::optional<Map> w_hn;
    if (!linear_before_reset) w_hn.emplace(w.w_hh + 2 * hs * hs, s.n, hs, 1, scratch);
    parallel(w_h.threads(), [&](int t, int nt) {
      // w_hn's shares are w_h's: the same rows and units.
      const auto sh = w_h.share(t, nt);
      const int64_t mine = sh.row_begin * hs, mine_gates = sh.row_begin * cols;
      for (int64_t i = 0; i < s.steps; ++i) {
        const int64_t step = st.time(i);
        const float* h = h_states + st.read_slot(step) * block;
        float* gi_t = gi + step * step_floats;
        float* gh_t = gh + step * step_floats;
        w_h.product(h, t, nt, sh, w.b_hh, gh_t, cols, false);
        if (w_hn) {
          float* rh_t = rh + step * block;
          k.gru_reset_units(sh.rows, hs, sh.unit_begin, sh.unit_end, gi_t + mine_gates, gh_t + mine_gates, h + mine,
                            rh_t + mine);
          team_barrier(nt);
          w_hn->product(rh_t, t, nt, sh, w.b_hh ? w.b_hh + 2 * hs : nullptr, gh_t + 2 * hs, cols, false);
        }
        k.gru_forward_units(sh.rows, hs, sh.unit_begin, sh.unit_end, gi_t + mine_gates, gh_t + mine_gates, h + mine,
                            h_states + st.write_slot(step) * block + mine, !linear_before_reset);
        team_barrier(nt);
      }
    });
  });
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
