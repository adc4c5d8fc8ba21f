// The recurrent layers, one direction of one layer a call (recurrent.h):
// the input map of all T steps as one GEMM; per step the hidden map (on
// W_hh packed once, or at some batch sizes transposed with W_hh read in
// place) and the cell's fused gate kernel, the forward's steps all on one
// team of threads (TeamHiddenMap, TransposedHiddenMap). The backwards walk
// the steps in reverse, also on one team (TeamProduct), with the same gate
// kernels as the cells' backwards (on a copy of the cached pre-activations,
// which they overwrite with gate gradients), keep every step's gate
// gradients, and after the loop form
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

// A product that one team of threads forms at every step of a time loop,
// rather than a GEMM entering and leaving OpenMP at every step (at N = 64,
// H = 512 an LSTM step's GEMM and gate kernel forked once each, and the
// gate kernel took 43 us of a 470 us step on two threads, 60 us on one):
// out[r, b * w + u] = (A B_b)[r, u] + beta out[r, b * w + u] (+ bias at the
// same column), for a step's A (n x k) that the team packs, and `blocks`
// column blocks B_b (k x w) of a weight packed once, each from a panel
// boundary. Thread t owns the units u of a contiguous range of the
// panels, of every block (or, when w is a single panel, a range of rows),
// and runs the step's gate kernel of exactly those units, so that the team
// meets only once A is whole and once it is packed. Each tile is the
// microkernel over the same K blocks as gemm_packed_b's, so results are
// those of any thread count.
class TeamProduct {
 public:
  // B_b = op(b) from b.data + b_step * block_step floats on.
  TeamProduct(int64_t n, int64_t k, int64_t w, int blocks, GemmOperand b, int64_t block_step, Scratch& scratch)
      : kern_(gemm_kernels()),
        blk_(kern_.blocking),
        n_(n),
        k_(k),
        w_(w),
        blocks_(blocks),
        row_panels_((n + blk_.mr - 1) / blk_.mr),
        unit_panels_((w + blk_.nr - 1) / blk_.nr),
        block_floats_(Scratch::size(packed_b_floats(blk_, k, w))),
        packed_b_(scratch.take(blocks * block_floats_)),
        packed_a_(scratch.take(packed_a_floats(blk_, n, k))) {
    for (int block = 0; block < blocks; ++block) {
      kern_.pack_b(k, w, {b.data + block * block_step, b.ld, b.trans}, packed_b_ + block * block_floats_);
    }
  }
  static int64_t floats(int64_t n, int64_t k, int64_t w, int blocks) {
    const GemmBlocking& blk = gemm_kernels().blocking;
    return blocks * Scratch::size(packed_b_floats(blk, k, w)) + Scratch::size(packed_a_floats(blk, n, k));
  }
  int threads() const { return threads_for(n_ * blocks_ * k_ * w_, int64_t{1} << 18); }

  // Thread t's block of the output: row panels [q_begin, q_end) x unit
  // panels [p_begin, p_end). The team splits the units while there are
  // panels enough (a GEMM's N split), the rows otherwise (w <= one panel).
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
    sh.unit_end = std::min(w_, sh.p_end * blk_.nr);
    return sh;
  }

  // Thread t's part of a step: its share of out = A (n x k, rows lda
  // apart) B + beta out (+ bias); the team meets once A is packed.
  void product(const float* a, int64_t lda, int t, int nt, const Share& sh, const float* bias, float beta,
               float* out, int64_t ldo) const {
    kern_.pack_a(n_, k_, {a, ld(lda), false}, row_panels_ * t / nt, row_panels_ * (t + 1) / nt, packed_a_);
    team_barrier(nt);
    multiply(sh, beta, out, ldo, bias);
  }

 private:
  void multiply(const Share& sh, float beta, float* out, int64_t ldo, const float* bias) const {
    const int64_t mr = blk_.mr, nr = blk_.nr;
    for (int block = 0; block < blocks_; ++block) {
      for (int64_t pc = 0; pc < k_; pc += blk_.kc) {
        const int64_t kc = std::min(blk_.kc, k_ - pc);
        const bool last = pc + kc == k_;
        const float* b_block = packed_b_ + block * block_floats_ + pc * unit_panels_ * nr;
        for (int64_t q = sh.q_begin; q < sh.q_end; ++q) {
          const float* a_panel = packed_a_ + pc * row_panels_ * mr + q * mr * kc;
          const int rows = static_cast<int>(std::min(mr, n_ - q * mr));
          for (int64_t p = sh.p_begin; p < sh.p_end; ++p) {
            const int64_t col = block * w_ + p * nr;
            const TileUpdate u{1.0f, beta, pc == 0, last && bias ? bias + col : nullptr};
            kern_.ukernel(kc, a_panel, b_block + p * kc * nr, nr, false, out + q * mr * ldo + col, ldo, rows,
                          static_cast<int>(std::min(nr, w_ - p * nr)), u);
          }
        }
      }
    }
  }

  const GemmKernels& kern_;
  const GemmBlocking& blk_;
  int64_t n_, k_, w_;
  int blocks_;
  int64_t row_panels_, unit_panels_, block_floats_;
  float* packed_b_;
  float* packed_a_;
};

// The hidden map of a forward time loop on one team (TeamProduct): h W_hh^T
// with W_hh packed per gate, so that each gate's units start at a panel.
class TeamHiddenMap {
 public:
  using Share = TeamProduct::Share;
  // `gates` gates of hs units: the gates * hs rows of W_hh (hs columns each)
  // from w_hh on; h has n rows.
  TeamHiddenMap(const float* w_hh, int64_t n, int64_t hs, int gates, Scratch& scratch)
      : product_(n, hs, hs, gates, {w_hh, ld(hs), true}, hs * hs, scratch), hs_(hs) {}
  static int64_t floats(int64_t n, int64_t hs, int gates) { return TeamProduct::floats(n, hs, hs, gates); }
  int threads() const { return product_.threads(); }
  Share share(int t, int nt) const { return product_.share(t, nt); }
  // W_hh was packed whole by the constructor.
  void prepare(int, const Share&) const {}
  // Thread t's part of a step: out (+)= h W^T (+ bias) for its share.
  void product(const float* h, int t, int nt, const Share& sh, const float* bias, float* out, int64_t ldo,
               bool accumulate) const {
    product_.product(h, hs_, t, nt, sh, bias, accumulate ? 1.0f : 0.0f, out, ldo);
  }

 private:
  TeamProduct product_;
  int64_t hs_;
};

// The backward's product of a step's gate gradients (n x cols) with the
// rows [first, first + cols) of W_hh (hs columns each): their share of
// grad_h, on the team of the time loop.
TeamProduct hidden_grad_weights(const float* w_hh, int64_t n, int64_t hs, int64_t first, int64_t cols,
                                Scratch& scratch) {
  return TeamProduct(n, cols, hs, 1, {w_hh + first * hs, ld(hs), false}, 0, scratch);
}

// The hidden map of a forward time loop computed transposed, W_hh h_t^T
// (recurrent_gemm.h's InPlaceMaps). Thread t owns the units of a
// contiguous range of column panels, of every gate, and all rows. Before
// its first step (`prepare`) each thread packs its rows of W_hh, its units
// of every gate, as the GEMM's A panels, once for all T steps: read in
// place at every step, the 14 rows of a tile lie H floats apart, and at
// H = 1024 (4 KB) all of them fall in one set of the L1, which holds 8
// (Zen 4) or 12 (Sapphire Rapids) lines of it: the LSTM layer ran at 140
// GFLOP/s at H = 1024 against 179 at H = 1008 (bench/NOTES.md). Each
// thread packs h_t^T for itself (n * hs floats: a copy per thread costs
// less than a meeting), so the team meets once a step, when h_{t+1} is
// whole. The interface is TeamHiddenMap's.
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
        packed_h_(scratch.take(get_num_threads() * InPlaceMaps::packed_floats(hs, n))),
        packed_w_(scratch.take(packed_w_floats(hs, gates))) {}
  // A copy of h^T per thread of any team (the GRU's W_hn map runs on the
  // team of its other gates), and W_hh packed.
  static int64_t floats(int64_t n, int64_t hs, int gates) {
    return Scratch::size(gates * hs * n) + get_num_threads() * InPlaceMaps::packed_floats(hs, n) +
           packed_w_floats(hs, gates);
  }
  int threads() const { return threads_for(n_ * gates_ * hs_ * hs_, int64_t{1} << 18); }
  Share share(int t, int nt) const {
    const auto [unit_begin, unit_end] = maps_.units(hs_, t, nt);
    return {0, n_, unit_begin, unit_end};
  }
  void prepare(int t, const Share& sh) const {
    for (int gate = 0; gate < gates_; ++gate) {
      maps_.pack_rows(w_hh_, hs_, gate * hs_ + sh.unit_begin, gate * hs_ + sh.unit_end, packed_rows(t, sh, gate));
    }
  }
  void product(const float* h, int t, int, const Share& sh, const float* bias, float* out, int64_t ldo,
               bool accumulate) const {
    const float* packed = maps_.pack(h, hs_, packed_h_ + t * InPlaceMaps::packed_floats(hs_, n_));
    for (int gate = 0; gate < gates_; ++gate) {
      maps_.gate_units({{w_hh_, hs_, packed, packed_rows(t, sh, gate)}}, hs_, gate, gate + 1, sh.unit_begin,
                       sh.unit_end, bias, nullptr, out, ldo, accumulate);
    }
  }

 private:
  // Thread t's packed rows of one gate. Its units of every gate take at
  // most gates * (units + mr) * hs floats (each gate's rows padded to
  // whole panels), so thread t's start at gates * (unit_begin + t * mr) * hs.
  static int64_t packed_w_floats(int64_t hs, int gates) {
    return Scratch::size(gates * (hs + get_num_threads() * gemm_kernels().blocking.mr) * hs);
  }
  float* packed_rows(int t, const Share& sh, int gate) const {
    const int64_t mr = gemm_kernels().blocking.mr;
    return packed_w_ + gates_ * (sh.unit_begin + t * mr) * hs_ +
           gate * InPlaceMaps::packed_rows_floats(sh.unit_end - sh.unit_begin, hs_);
  }

  InPlaceMaps maps_;
  const float* w_hh_;
  int64_t n_, hs_;
  int gates_;
  float* packed_h_;
  float* packed_w_;
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
      map.prepare(t, sh);
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

using Share = TeamProduct::Share;

// grad_h += the gradient of y at step t, in the share's rows and units.
void add_output_grad(const LayerOutputGrad& g, int64_t t, int64_t n, int64_t hs, const Share& sh, float* grad_h) {
  if (!g.grad_y) return;
  for (int64_t row = sh.row_begin; row < sh.row_begin + sh.rows; ++row) {
    const float* src = g.grad_y + (t * n + row) * g.ld_grad_y;
    float* dst = grad_h + row * hs;
    for (int64_t j = sh.unit_begin; j < sh.unit_end; ++j) dst[j] += src[j];
  }
}

// The share's rows and units of every gate of a step's buffer (rows of
// gates * hs floats) copied from src to dst: what its gate kernel reads.
void copy_share(const float* src, int64_t hs, int gates, const Share& sh, float* dst) {
  const int64_t cols = gates * hs, len = sh.unit_end - sh.unit_begin;
  if (len <= 0) return;
  for (int64_t row = sh.row_begin; row < sh.row_begin + sh.rows; ++row) {
    for (int gate = 0; gate < gates; ++gate) {
      const int64_t at = row * cols + gate * hs + sh.unit_begin;
      std::memcpy(dst + at, src + at, sizeof(float) * len);
    }
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
// grad_h, and grad_h becomes d_t W_hh, all steps on one team (TeamProduct:
// each thread copies and runs the gate kernel of its own units, then its
// units of d_t W_hh, which are what its next step reads); then grad_x and
// the weight gradients from all the d_t at once.
template <class GateBackward>
void summed_maps_backward(const LayerShape& s, int gates, const float* x, const CellWeights& w,
                          const float* h_states, const float* pre, const LayerOutputGrad& g, float* grad_x,
                          float* grad_h0, const CellWeightGrads& gw, const GateBackward& gate_backward) {
  const Steps st{s};
  const int64_t cols = gates * s.hs, rows = s.steps * s.n, step = s.n * cols;
  Scratch scratch(Scratch::size(rows * cols) + Scratch::size(st.block()) + TeamProduct::floats(s.n, cols, s.hs, 1) +
                  Scratch::size(rows));
  float* d = scratch.take(rows * cols);
  float* grad_h = scratch.take(st.block());
  copy_or_zero(g.grad_h_n, st.block(), grad_h);
  const TeamProduct w_hh = hidden_grad_weights(w.w_hh, s.n, s.hs, 0, cols, scratch);
  parallel(w_hh.threads(), [&](int t, int nt) {
    const Share sh = w_hh.share(t, nt);
    for (int64_t i = s.steps - 1; i >= 0; --i) {
      const int64_t time = st.time(i);
      add_output_grad(g, time, s.n, s.hs, sh, grad_h);
      float* dt = d + time * step;
      copy_share(pre + time * step, s.hs, gates, sh, dt);
      gate_backward(time, sh, dt, grad_h);
      team_barrier(nt);  // d_t whole
      w_hh.product(dt, cols, t, nt, sh, nullptr, 0.0f, grad_h, s.hs);
    }
  });
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
// packed, h_{t+1} whole; in the backward d_t whole, d_t packed), and at
// N = 32, H = 256 a step is a few tens of microseconds, while two
// directions need no meeting at all. Below the grain (a direction's
// multiply-adds) one fork costs more than it saves.
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
  summed_maps_backward(s, 4, x, w, h_states, gates, g, grad_x, grad_h0, gw,
                       [&](int64_t t, const Share& sh, float* d, const float* grad_h) {
                         const int64_t mine = sh.row_begin * s.hs;
                         float* grad_c_mine = grad_c.data() + mine;
                         k.lstm_backward_units(sh.rows, s.hs, sh.unit_begin, sh.unit_end, d + 4 * mine,
                                               c_states + st.read_slot(t) * block + mine, grad_h + mine,
                                               grad_c_mine, grad_c_mine);
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
  summed_maps_backward(s, 1, x, w, h_states, pre, g, grad_x, grad_h0, gw,
                       [&](int64_t, const Share& sh, float* d, const float* grad_h) {
                         const int64_t mine = sh.row_begin * s.hs;
                         k.rnn_backward_units(sh.rows, s.hs, sh.unit_begin, sh.unit_end, d + mine, grad_h + mine,
                                              relu);
                       });
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
      w_h.prepare(t, sh);
      if (w_hn) w_hn->prepare(t, sh);
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
                  TeamProduct::floats(s.n, h_cols, hs, 1) + TeamProduct::floats(s.n, hs, hs, 1) +
                  Scratch::size(rows));
  float* d_gi = scratch.take(rows * cols);
  float* d_gh = scratch.take(d_gh_floats);
  float* grad_h = scratch.take(block);
  float* grad_prev = scratch.take(block);
  float* d_rh = scratch.take(block);
  copy_or_zero(g.grad_h_n, block, grad_h);
  const TeamProduct w_h = hidden_grad_weights(w.w_hh, s.n, hs, 0, h_cols, scratch);
  std::optional<TeamProduct> w_hn;
  if (!linear_before_reset) w_hn.emplace(hidden_grad_weights(w.w_hh, s.n, hs, 2 * hs, hs, scratch));
  const RecurrentKernels& k = recurrent_kernels();
  // One team for all steps, as summed_maps_backward's; without
  // linear_before_reset d_rh = da_n W_hn needs every unit of da_n, and
  // the second product every unit of da_r: two meetings more a step.
  parallel(w_h.threads(), [&](int t, int nt) {
    // w_hn's shares are w_h's: the same rows and units.
    const Share sh = w_h.share(t, nt);
    const int64_t mine = sh.row_begin * hs, mine_gates = sh.row_begin * cols;
    float* grad_next = grad_h;  // the gradient of the state a step writes
    float* grad_this = grad_prev;  // and of the one it reads
    for (int64_t i = s.steps - 1; i >= 0; --i) {
      const int64_t time = st.time(i);
      const float* h = h_states + st.read_slot(time) * block;
      add_output_grad(g, time, s.n, hs, sh, grad_next);
      float* dgi = d_gi + time * step;
      float* dgh = d_gh + (linear_before_reset ? time * step : 0);
      copy_share(gi + time * step, hs, 3, sh, dgi);
      copy_share(gh + time * step, hs, 3, sh, dgh);
      k.gru_backward_units(sh.rows, hs, sh.unit_begin, sh.unit_end, dgi + mine_gates, dgh + mine_gates, h + mine,
                           grad_next + mine, grad_this + mine, !linear_before_reset);
      team_barrier(nt);  // the step's gate gradients whole
      if (w_hn) {
        w_hn->product(dgi + 2 * hs, cols, t, nt, sh, nullptr, 0.0f, d_rh, hs);
        k.gru_backward_reset_units(sh.rows, hs, sh.unit_begin, sh.unit_end, dgi + mine_gates, dgh + mine_gates,
                                   h + mine, d_rh + mine, grad_this + mine);
        team_barrier(nt);  // da_r whole
        w_h.product(dgi, cols, t, nt, sh, nullptr, 1.0f, grad_this, hs);
      } else {
        w_h.product(dgh, cols, t, nt, sh, nullptr, 1.0f, grad_this, hs);
      }
      std::swap(grad_next, grad_this);
    }
  });
  // The gradient the last step wrote: grad_prev after an odd number of steps.
  if (s.steps % 2 != 0) std::swap(grad_h, grad_prev);
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
