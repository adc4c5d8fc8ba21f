// _C entries of the recurrent cells (forward and backward), each returning
// its result or None for arguments the Python layer must validate first
// (see common.h); and of the layers, both directions of one layer a call,
// which the Python layer calls with arguments it has validated (the params
// list is parsed there), so that a mismatch here raises ValueError.
#include <array>
#include <climits>
#include <optional>

#include "bindings/common.h"
#include "cpu/recurrent/recurrent.h"

namespace minidnn::bindings {
namespace {

// x (N, I), h (N, H), w_ih (G*H, I), w_hh (G*H, H), biases (G*H,) or None,
// as the kernels read them, or false.
struct CellArgs {
  FloatArg x, h, w_ih, w_hh;
  std::optional<FloatArg> b_ih, b_hh;
  int64_t n = 0, in = 0, hs = 0, cols = 0;

  cpu::CellWeights weights() const {
    return {w_ih.data, w_hh.data, b_ih ? b_ih->data : nullptr, b_hh ? b_hh->data : nullptr};
  }
  // An (N, H) array.
  bool state(py::handle arg, FloatArg* out) const {
    const Py_intptr_t dims[2] = {static_cast<Py_intptr_t>(n), static_cast<Py_intptr_t>(hs)};
    return float_arg(arg, out) && out->shape_is(2, dims);
  }
  bool optional_state(py::handle arg, const float** out) const {
    if (arg.is_none()) {
      *out = nullptr;
      return true;
    }
    FloatArg a;
    if (!state(arg, &a)) return false;
    *out = a.data;
    return true;
  }
  // The work measure of run_kernel: the multiply-adds of the two maps.
  int64_t work() const {
    int64_t w = 0;
    if (__builtin_mul_overflow(n * cols, in + hs, &w)) return INT64_MAX;
    return w;
  }
};

bool parse_cell(int gates, py::handle x, py::handle h, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                py::handle b_hh, CellArgs* a) {
  if (!float_arg(x, &a->x) || !float_arg(h, &a->h) || !float_arg(w_ih, &a->w_ih) || !float_arg(w_hh, &a->w_hh) ||
      !optional_float_arg(b_ih, &a->b_ih) || !optional_float_arg(b_hh, &a->b_hh)) {
    return false;
  }
  if (a->x.nd != 2 || a->h.nd != 2 || a->w_ih.nd != 2 || a->w_hh.nd != 2) return false;
  a->n = a->x.dims[0];
  a->in = a->x.dims[1];
  a->hs = a->w_hh.dims[1];
  a->cols = gates * a->hs;
  if (a->w_hh.dims[0] != a->cols || a->w_ih.dims[0] != a->cols || a->w_ih.dims[1] != a->in) return false;
  if (a->h.dims[0] != a->n || a->h.dims[1] != a->hs) return false;
  for (const auto* b : {&a->b_ih, &a->b_hh}) {
    if (*b && ((*b)->nd != 1 || (*b)->dims[0] != a->cols)) return false;
  }
  return true;
}

py::object new_matrix(int64_t rows, int64_t cols) {
  const Py_intptr_t dims[2] = {static_cast<Py_intptr_t>(rows), static_cast<Py_intptr_t>(cols)};
  return new_float_array(2, dims);
}

// The weight gradients' outputs: (grad_w_ih, grad_w_hh, grad_b_ih or None, grad_b_hh or None).
struct WeightGradOutputs {
  py::object w_ih, w_hh, b_ih, b_hh;
  cpu::CellWeightGrads ptrs{};

  explicit WeightGradOutputs(const CellArgs& a)
      : w_ih(new_matrix(a.cols, a.in)), w_hh(new_matrix(a.cols, a.hs)), b_ih(py::none()), b_hh(py::none()) {
    const Py_intptr_t dims[1] = {static_cast<Py_intptr_t>(a.cols)};
    if (a.b_ih) b_ih = new_float_array(1, dims);
    if (a.b_hh) b_hh = new_float_array(1, dims);
    ptrs = {float_data(w_ih), float_data(w_hh), a.b_ih ? float_data(b_ih) : nullptr,
            a.b_hh ? float_data(b_hh) : nullptr};
  }
};

bool nonlinearity_arg(py::handle h, bool* relu) {
  int choice = 0;
  if (!choice_arg(h, std::array<const char*, 2>{"tanh", "relu"}, &choice)) return false;
  *relu = choice == 1;
  return true;
}

bool bool_arg(py::handle h, bool* out) {
  if (h.ptr() != Py_True && h.ptr() != Py_False) return false;
  *out = h.ptr() == Py_True;
  return true;
}

py::object lstm_cell(py::handle x, py::handle h, py::handle c, py::handle w_ih, py::handle w_hh, py::handle b_ih,
                     py::handle b_hh) {
  CellArgs a;
  FloatArg cs;
  if (!parse_cell(4, x, h, w_ih, w_hh, b_ih, b_hh, &a) || !a.state(c, &cs)) return py::none();
  py::object h1 = new_matrix(a.n, a.hs), c1 = new_matrix(a.n, a.hs);
  float *h1p = float_data(h1), *c1p = float_data(c1);
  run_kernel(a.work(), [&] { cpu::lstm_cell(a.n, a.in, a.hs, a.x.data, a.h.data, cs.data, a.weights(), h1p, c1p); });
  return py::make_tuple(h1, c1);
}

py::object lstm_cell_backward(py::handle grad_h1, py::handle grad_c1, py::handle x, py::handle h, py::handle c,
                              py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh) {
  CellArgs a;
  FloatArg cs;
  const float *gh1 = nullptr, *gc1 = nullptr;
  if (!parse_cell(4, x, h, w_ih, w_hh, b_ih, b_hh, &a) || !a.state(c, &cs) || !a.optional_state(grad_h1, &gh1) ||
      !a.optional_state(grad_c1, &gc1)) {
    return py::none();
  }
  py::object gx = new_matrix(a.n, a.in), gh = new_matrix(a.n, a.hs), gc = new_matrix(a.n, a.hs);
  WeightGradOutputs gw(a);
  float *gxp = float_data(gx), *ghp = float_data(gh), *gcp = float_data(gc);
  run_kernel(a.work(), [&] {
    cpu::lstm_cell_backward(a.n, a.in, a.hs, gh1, gc1, a.x.data, a.h.data, cs.data, a.weights(), gxp, ghp, gcp,
                            gw.ptrs);
  });
  return py::make_tuple(gx, gh, gc, gw.w_ih, gw.w_hh, gw.b_ih, gw.b_hh);
}

py::object gru_cell(py::handle x, py::handle h, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                    py::handle linear_before_reset) {
  CellArgs a;
  bool lbr = true;
  if (!parse_cell(3, x, h, w_ih, w_hh, b_ih, b_hh, &a) || !bool_arg(linear_before_reset, &lbr)) return py::none();
  py::object h1 = new_matrix(a.n, a.hs);
  float* h1p = float_data(h1);
  run_kernel(a.work(), [&] { cpu::gru_cell(a.n, a.in, a.hs, a.x.data, a.h.data, a.weights(), lbr, h1p); });
  return h1;
}

py::object gru_cell_backward(py::handle grad_h1, py::handle x, py::handle h, py::handle w_ih, py::handle w_hh,
                             py::handle b_ih, py::handle b_hh, py::handle linear_before_reset) {
  CellArgs a;
  FloatArg g;
  bool lbr = true;
  if (!parse_cell(3, x, h, w_ih, w_hh, b_ih, b_hh, &a) || !a.state(grad_h1, &g) ||
      !bool_arg(linear_before_reset, &lbr)) {
    return py::none();
  }
  py::object gx = new_matrix(a.n, a.in), gh = new_matrix(a.n, a.hs);
  WeightGradOutputs gw(a);
  float *gxp = float_data(gx), *ghp = float_data(gh);
  run_kernel(a.work(), [&] {
    cpu::gru_cell_backward(a.n, a.in, a.hs, g.data, a.x.data, a.h.data, a.weights(), lbr, gxp, ghp, gw.ptrs);
  });
  return py::make_tuple(gx, gh, gw.w_ih, gw.w_hh, gw.b_ih, gw.b_hh);
}

py::object rnn_cell(py::handle x, py::handle h, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                    py::handle nonlinearity) {
  CellArgs a;
  bool relu = false;
  if (!parse_cell(1, x, h, w_ih, w_hh, b_ih, b_hh, &a) || !nonlinearity_arg(nonlinearity, &relu)) return py::none();
  py::object h1 = new_matrix(a.n, a.hs);
  float* h1p = float_data(h1);
  run_kernel(a.work(), [&] { cpu::rnn_cell(a.n, a.in, a.hs, a.x.data, a.h.data, a.weights(), relu, h1p); });
  return h1;
}

py::object rnn_cell_backward(py::handle grad_h1, py::handle x, py::handle h, py::handle w_ih, py::handle w_hh,
                             py::handle b_ih, py::handle b_hh, py::handle nonlinearity) {
  CellArgs a;
  FloatArg g;
  bool relu = false;
  if (!parse_cell(1, x, h, w_ih, w_hh, b_ih, b_hh, &a) || !a.state(grad_h1, &g) ||
      !nonlinearity_arg(nonlinearity, &relu)) {
    return py::none();
  }
  py::object gx = new_matrix(a.n, a.in), gh = new_matrix(a.n, a.hs);
  WeightGradOutputs gw(a);
  float *gxp = float_data(gx), *ghp = float_data(gh);
  run_kernel(a.work(), [&] {
    cpu::rnn_cell_backward(a.n, a.in, a.hs, g.data, a.x.data, a.h.data, a.weights(), relu, gxp, ghp, gw.ptrs);
  });
  return py::make_tuple(gx, gh, gw.w_ih, gw.w_hh, gw.b_ih, gw.b_hh);
}


// ----------------------------------------------------------------- layers
// One call per layer: x (T, N, I); params a list of one (w_ih, w_hh, b_ih,
// b_hh) tuple per direction, the second (if any) the reverse direction's;
// initial states and the final states' gradients (directions, N, H) or
// None; the forward's buffers a list of one tuple per direction. Each
// returns a list of one tuple of results per direction.

// A per-step buffer's (count, N, width): count T + 1 states or T steps.
struct Extent {
  int64_t count, width;
};

// x and one direction's weights, as CellArgs with the batch n.
struct LayerArgs : CellArgs {
  int64_t steps = 0;

  // The T + 1 states, (T + 1, N, H); T steps of `width`, (T, N, width).
  Extent states() const { return {steps + 1, hs}; }
  Extent steps_of(int64_t width) const { return {steps, width}; }

  cpu::LayerShape shape(bool reverse) const { return {steps, n, in, hs, reverse}; }
  // A (count, N, width) array: T + 1 states or T steps.
  py::object new_steps(int64_t count, int64_t width) const {
    const Py_intptr_t dims[3] = {static_cast<Py_intptr_t>(count), static_cast<Py_intptr_t>(n),
                                 static_cast<Py_intptr_t>(width)};
    return new_float_array(3, dims);
  }
  // An array of exactly the given shape (what the forward made).
  const float* exact(py::handle arg, const char* name, int64_t count, int64_t width) const {
    const Py_intptr_t dims[3] = {static_cast<Py_intptr_t>(count), static_cast<Py_intptr_t>(n),
                                 static_cast<Py_intptr_t>(width)};
    FloatArg a;
    if (!float_arg(arg, &a) || !a.shape_is(3, dims)) {
      fail_argument(name, "a C-contiguous float32 array of shape (" + std::to_string(count) + ", " +
                    std::to_string(n) + ", " + std::to_string(width) + ")",
                    float_arg(arg, &a) ? shape_string(a) : "another object");
    }
    return a.data;
  }
  int64_t layer_work() const {
    int64_t w = 0;
    if (__builtin_mul_overflow(work(), steps, &w)) return INT64_MAX;
    return w;
  }
};

// The size of a list or tuple of `lo` to `hi` items, or a ValueError naming `name`.
Py_ssize_t sequence_size(py::handle seq, const char* name, const char* what, Py_ssize_t lo, Py_ssize_t hi) {
  const bool list = PyList_Check(seq.ptr()), tuple = PyTuple_Check(seq.ptr());
  const Py_ssize_t size = list ? PyList_GET_SIZE(seq.ptr()) : tuple ? PyTuple_GET_SIZE(seq.ptr()) : -1;
  if (size < lo || size > hi) {
    fail_argument(name, what, size < 0 ? "another object" : "a sequence of " + std::to_string(size));
  }
  return size;
}

// Item i of a list or tuple that sequence_size() took (borrowed: the sequence keeps it).
py::handle sequence_item(py::handle seq, Py_ssize_t i) {
  return PyList_Check(seq.ptr()) ? PyList_GET_ITEM(seq.ptr(), i) : PyTuple_GET_ITEM(seq.ptr(), i);
}

LayerArgs parse_layer(int gates, py::handle x, py::handle entry) {
  sequence_size(entry, "params", "(w_ih, w_hh, b_ih, b_hh) tuples", 4, 4);
  py::handle w_ih = sequence_item(entry, 0), w_hh = sequence_item(entry, 1);
  py::handle b_ih = sequence_item(entry, 2), b_hh = sequence_item(entry, 3);
  LayerArgs a;
  if (!float_arg(x, &a.x) || a.x.nd != 3) fail_argument("x", "a C-contiguous float32 array (T, N, I)", "another");
  if (!float_arg(w_ih, &a.w_ih) || !float_arg(w_hh, &a.w_hh) || !optional_float_arg(b_ih, &a.b_ih) ||
      !optional_float_arg(b_hh, &a.b_hh) || a.w_ih.nd != 2 || a.w_hh.nd != 2) {
    fail_argument("params", "C-contiguous float32 weights", "another");
  }
  a.steps = a.x.dims[0];
  a.n = a.x.dims[1];
  a.in = a.x.dims[2];
  a.hs = a.w_hh.dims[1];
  a.cols = gates * a.hs;
  const bool biases_ok = (!a.b_ih || (a.b_ih->nd == 1 && a.b_ih->dims[0] == a.cols)) &&
                         (!a.b_hh || (a.b_hh->nd == 1 && a.b_hh->dims[0] == a.cols));
  if (a.hs < 1 || a.w_hh.dims[0] != a.cols || a.w_ih.dims[0] != a.cols || a.w_ih.dims[1] != a.in || !biases_ok) {
    fail_argument("params", "weights of matching shapes", shape_string(a.w_ih) + " and " + shape_string(a.w_hh));
  }
  return a;
}

// The gradient of y, (T, N, >= directions * H) with direction d's H columns
// from d * H, or None; and grad_h_n of direction d (or null).
cpu::LayerOutputGrad output_grad(const LayerArgs& a, int d, py::handle grad_y, const float* grad_h_n) {
  cpu::LayerOutputGrad g{nullptr, 0, grad_h_n};
  if (grad_y.is_none()) return g;
  FloatArg gy;
  const int64_t column = d * a.hs;
  if (!float_arg(grad_y, &gy) || gy.nd != 3 || gy.dims[0] != a.steps || gy.dims[1] != a.n ||
      column + a.hs > gy.dims[2]) {
    fail_argument("grad_y", "a C-contiguous float32 array (T, N, >= directions * H)", "another");
  }
  g.grad_y = gy.data + column;
  g.ld_grad_y = gy.dims[2];
  return g;
}

// A layer's directions: each one's LayerArgs (the same x and hidden size),
// direction 1 the reverse one.
class LayerDirections {
 public:
  LayerDirections(int gates, py::handle x, py::handle params) {
    const char* expected = "a list of 1 or 2 (w_ih, w_hh, b_ih, b_hh) tuples";
    count_ = static_cast<int>(sequence_size(params, "params", expected, 1, 2));
    for (int d = 0; d < count_; ++d) args_[d] = parse_layer(gates, x, sequence_item(params, d));
    if (count_ == 2 && args_[1].hs != args_[0].hs) {
      fail_argument("params", "directions of one hidden size",
                    std::to_string(args_[0].hs) + " and " + std::to_string(args_[1].hs));
    }
  }
  int count() const { return count_; }
  const LayerArgs& operator[](int d) const { return args_[d]; }

  // (directions, N, H) states or None: their data, or null.
  const float* states(py::handle arg, const char* name) const {
    if (arg.is_none()) return nullptr;
    const LayerArgs& a = args_[0];
    const Py_intptr_t dims[3] = {count_, static_cast<Py_intptr_t>(a.n), static_cast<Py_intptr_t>(a.hs)};
    FloatArg s;
    if (!float_arg(arg, &s) || !s.shape_is(3, dims)) {
      fail_argument(name, "None or a C-contiguous float32 array of shape (" + std::to_string(count_) + ", " +
                    std::to_string(a.n) + ", " + std::to_string(a.hs) + ")", "another");
    }
    return s.data;
  }
  // Direction d's (N, H) state of states(), or null.
  const float* state(const float* states, int d) const {
    return states ? states + d * args_[0].n * args_[0].hs : nullptr;
  }
  // Each direction's new (count, N, width) arrays, one tuple a direction
  // appended to `out` (None for a count of 0), and their data (or null).
  template <size_t K>
  std::array<std::array<float*, K>, 2> new_buffers(const std::array<Extent, K>& extents, py::list* out) const {
    std::array<std::array<float*, K>, 2> data{};
    for (int d = 0; d < count_; ++d) {
      py::tuple arrays(K);
      for (size_t i = 0; i < K; ++i) {
        if (extents[i].count == 0) {
          arrays[i] = py::none();
          continue;
        }
        py::object a = args_[d].new_steps(extents[i].count, extents[i].width);
        data[d][i] = float_data(a);
        arrays[i] = a;
      }
      out->append(arrays);
    }
    return data;
  }
  // The forward's buffers, one tuple of K arrays a direction, each of
  // exactly its extent (a count of 0: not read, null).
  template <size_t K>
  std::array<std::array<const float*, K>, 2> buffers(py::handle list, const std::array<Extent, K>& extents,
                                                      const std::array<const char*, K>& names) const {
    std::array<std::array<const float*, K>, 2> data{};
    sequence_size(list, "buffers", "one tuple of buffers per direction", count_, count_);
    for (int d = 0; d < count_; ++d) {
      py::handle mine = sequence_item(list, d);
      sequence_size(mine, "buffers", "tuples of the forward's buffers", K, K);
      for (size_t i = 0; i < K; ++i) {
        if (extents[i].count == 0) continue;
        data[d][i] = args_[d].exact(sequence_item(mine, i), names[i], extents[i].count, extents[i].width);
      }
    }
    return data;
  }
  // Each direction's gradient of y and of its final hidden state (grad_h_n: states()).
  std::array<cpu::LayerOutputGrad, 2> output_grads(py::handle grad_y, const float* grad_h_n) const {
    std::array<cpu::LayerOutputGrad, 2> g{};
    for (int d = 0; d < count_; ++d) g[d] = output_grad(args_[d], d, grad_y, state(grad_h_n, d));
    return g;
  }

  // kernel(d, args of d) for every direction (cpu::layer_directions), without the GIL.
  template <class Kernel>
  void run(const Kernel& kernel) const {
    const int64_t work = args_[0].layer_work();
    run_kernel(work, [&] { cpu::layer_directions(count_, work, [&](int d) { kernel(d, args_[d]); }); });
  }

 private:
  int count_ = 0;
  std::array<LayerArgs, 2> args_;
};

// Each direction's forward buffers (recurrent.h; the Python layer's
// RecurrentCache): the LSTM's h_states, c_states and gates; the GRU's
// h_states, gi, gh and, with linear_before_reset=False, rh (else None);
// the RNN's h_states and pre.
std::array<Extent, 3> lstm_buffers(const LayerArgs& a) { return {{a.states(), a.states(), a.steps_of(a.cols)}}; }
std::array<Extent, 4> gru_buffers(const LayerArgs& a, bool linear_before_reset) {
  return {{a.states(), a.steps_of(a.cols), a.steps_of(a.cols), {linear_before_reset ? 0 : a.steps, a.hs}}};
}
std::array<Extent, 2> rnn_buffers(const LayerArgs& a) { return {{a.states(), a.steps_of(a.hs)}}; }

py::object lstm_layer(py::handle x, py::handle params, py::handle h0, py::handle c0) {
  const LayerDirections dirs(4, x, params);
  const float *h0p = dirs.states(h0, "h0"), *c0p = dirs.states(c0, "c0");
  py::list out;
  const auto p = dirs.new_buffers(lstm_buffers(dirs[0]), &out);
  dirs.run([&](int d, const LayerArgs& a) {
    cpu::lstm_layer(a.shape(d == 1), a.x.data, a.weights(), dirs.state(h0p, d), dirs.state(c0p, d), p[d][0], p[d][1],
                    p[d][2]);
  });
  return out;
}

// The weight gradients of direction d and its (N, H) initial states' gradients.
struct DirectionGrads {
  std::optional<WeightGradOutputs> weights;
  py::object x;
  std::array<py::object, 2> initial;
};

// The tuple a backward returns for one direction: (grad_x, the initial
// states' gradients, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh).
py::tuple direction_grads_tuple(const DirectionGrads& g, int states) {
  const WeightGradOutputs& w = *g.weights;
  if (states == 2) return py::make_tuple(g.x, g.initial[0], g.initial[1], w.w_ih, w.w_hh, w.b_ih, w.b_hh);
  return py::make_tuple(g.x, g.initial[0], w.w_ih, w.w_hh, w.b_ih, w.b_hh);
}

// Allocates every direction's gradients (`states` initial states each).
std::array<DirectionGrads, 2> new_direction_grads(const LayerDirections& dirs, int states) {
  std::array<DirectionGrads, 2> g;
  for (int d = 0; d < dirs.count(); ++d) {
    const LayerArgs& a = dirs[d];
    g[d].x = a.new_steps(a.steps, a.in);
    for (int s = 0; s < states; ++s) g[d].initial[s] = new_matrix(a.n, a.hs);
    g[d].weights.emplace(a);
  }
  return g;
}

py::list grads_list(const LayerDirections& dirs, const std::array<DirectionGrads, 2>& g, int states) {
  py::list out;
  for (int d = 0; d < dirs.count(); ++d) out.append(direction_grads_tuple(g[d], states));
  return out;
}

py::object lstm_layer_backward(py::handle x, py::handle params, py::handle buffers, py::handle grad_y,
                               py::handle grad_h_n, py::handle grad_c_n) {
  const LayerDirections dirs(4, x, params);
  const auto buf = dirs.buffers(buffers, lstm_buffers(dirs[0]), {"h_states", "c_states", "gates"});
  const auto og = dirs.output_grads(grad_y, dirs.states(grad_h_n, "grad_h_n"));
  const float* gcn = dirs.states(grad_c_n, "grad_c_n");
  const auto g = new_direction_grads(dirs, 2);
  dirs.run([&](int d, const LayerArgs& a) {
    cpu::lstm_layer_backward(a.shape(d == 1), a.x.data, a.weights(), buf[d][0], buf[d][1], buf[d][2], og[d],
                             dirs.state(gcn, d), float_data(g[d].x), float_data(g[d].initial[0]),
                             float_data(g[d].initial[1]), g[d].weights->ptrs);
  });
  return grads_list(dirs, g, 2);
}

py::object gru_layer(py::handle x, py::handle params, py::handle h0, bool linear_before_reset) {
  const LayerDirections dirs(3, x, params);
  const float* h0p = dirs.states(h0, "h0");
  py::list out;
  const auto p = dirs.new_buffers(gru_buffers(dirs[0], linear_before_reset), &out);
  dirs.run([&](int d, const LayerArgs& a) {
    cpu::gru_layer(a.shape(d == 1), a.x.data, a.weights(), linear_before_reset, dirs.state(h0p, d), p[d][0], p[d][1],
                   p[d][2], p[d][3]);
  });
  return out;
}

py::object gru_layer_backward(py::handle x, py::handle params, py::handle buffers, bool linear_before_reset,
                              py::handle grad_y, py::handle grad_h_n) {
  const LayerDirections dirs(3, x, params);
  const auto buf = dirs.buffers(buffers, gru_buffers(dirs[0], linear_before_reset), {"h_states", "gi", "gh", "rh"});
  const auto og = dirs.output_grads(grad_y, dirs.states(grad_h_n, "grad_h_n"));
  const auto g = new_direction_grads(dirs, 1);
  dirs.run([&](int d, const LayerArgs& a) {
    cpu::gru_layer_backward(a.shape(d == 1), a.x.data, a.weights(), linear_before_reset, buf[d][0], buf[d][1],
                            buf[d][2], buf[d][3], og[d], float_data(g[d].x), float_data(g[d].initial[0]),
                            g[d].weights->ptrs);
  });
  return grads_list(dirs, g, 1);
}

py::object rnn_layer(py::handle x, py::handle params, py::handle h0, bool relu) {
  const LayerDirections dirs(1, x, params);
  const float* h0p = dirs.states(h0, "h0");
  py::list out;
  const auto p = dirs.new_buffers(rnn_buffers(dirs[0]), &out);
  dirs.run([&](int d, const LayerArgs& a) {
    cpu::rnn_layer(a.shape(d == 1), a.x.data, a.weights(), relu, dirs.state(h0p, d), p[d][0], p[d][1]);
  });
  return out;
}

py::object rnn_layer_backward(py::handle x, py::handle params, py::handle buffers, bool relu, py::handle grad_y,
                              py::handle grad_h_n) {
  const LayerDirections dirs(1, x, params);
  const auto buf = dirs.buffers(buffers, rnn_buffers(dirs[0]), {"h_states", "pre"});
  const auto og = dirs.output_grads(grad_y, dirs.states(grad_h_n, "grad_h_n"));
  const auto g = new_direction_grads(dirs, 1);
  dirs.run([&](int d, const LayerArgs& a) {
    cpu::rnn_layer_backward(a.shape(d == 1), a.x.data, a.weights(), relu, buf[d][0], buf[d][1], og[d],
                            float_data(g[d].x), float_data(g[d].initial[0]), g[d].weights->ptrs);
  });
  return grads_list(dirs, g, 1);
}

}  // namespace

void bind_recurrent(py::module_& m) {
  m.def("lstm_cell", &lstm_cell, py::arg("x"), py::arg("h"), py::arg("c"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih"), py::arg("b_hh"));
  m.def("lstm_cell_backward", &lstm_cell_backward, py::arg("grad_h1"), py::arg("grad_c1"), py::arg("x"),
        py::arg("h"), py::arg("c"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"));
  m.def("gru_cell", &gru_cell, py::arg("x"), py::arg("h"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("linear_before_reset"));
  m.def("gru_cell_backward", &gru_cell_backward, py::arg("grad_h1"), py::arg("x"), py::arg("h"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("linear_before_reset"));
  m.def("rnn_cell", &rnn_cell, py::arg("x"), py::arg("h"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("nonlinearity"));
  m.def("rnn_cell_backward", &rnn_cell_backward, py::arg("grad_h1"), py::arg("x"), py::arg("h"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("nonlinearity"));
  m.def("lstm_layer", &lstm_layer, py::arg("x"), py::arg("params"), py::arg("h0"), py::arg("c0"));
  m.def("lstm_layer_backward", &lstm_layer_backward, py::arg("x"), py::arg("params"), py::arg("buffers"),
        py::arg("grad_y"), py::arg("grad_h_n"), py::arg("grad_c_n"));
  m.def("gru_layer", &gru_layer, py::arg("x"), py::arg("params"), py::arg("h0"), py::arg("linear_before_reset"));
  m.def("gru_layer_backward", &gru_layer_backward, py::arg("x"), py::arg("params"), py::arg("buffers"),
        py::arg("linear_before_reset"), py::arg("grad_y"), py::arg("grad_h_n"));
  m.def("rnn_layer", &rnn_layer, py::arg("x"), py::arg("params"), py::arg("h0"), py::arg("relu"));
  m.def("rnn_layer_backward", &rnn_layer_backward, py::arg("x"), py::arg("params"), py::arg("buffers"),
        py::arg("relu"), py::arg("grad_y"), py::arg("grad_h_n"));
}

}  // namespace minidnn::bindings
