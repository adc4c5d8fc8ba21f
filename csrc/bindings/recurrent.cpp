// _C entries of the recurrent cells (forward and backward), each returning
// its result or None for arguments the Python layer must validate first
// (see common.h); and of the layers, one direction of one layer a call,
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

// x (T, N, I) and one direction's weights, as CellArgs with the batch n.
struct LayerArgs : CellArgs {
  int64_t steps = 0;

  cpu::LayerShape shape(bool reverse) const { return {steps, n, in, hs, reverse}; }
  // (T + 1, N, H) states, (T, N, width) per-step buffers.
  py::object new_states() const { return new_steps(steps + 1, hs); }
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
  // An (N, H) state or None.
  const float* initial(py::handle arg, const char* name) const {
    const float* p = nullptr;
    if (!optional_state(arg, &p)) {
      fail_argument(name, "None or a C-contiguous float32 array of shape (" + std::to_string(n) + ", " +
                    std::to_string(hs) + ")", "another");
    }
    return p;
  }
  int64_t layer_work() const {
    int64_t w = 0;
    if (__builtin_mul_overflow(work(), steps, &w)) return INT64_MAX;
    return w;
  }
};

LayerArgs parse_layer(int gates, py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh) {
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

// The gradient of y, (T, N, width) with this direction's H columns from `column`, or None.
cpu::LayerOutputGrad output_grad(const LayerArgs& a, py::handle grad_y, int64_t column, py::handle grad_h_n) {
  cpu::LayerOutputGrad g{nullptr, 0, a.initial(grad_h_n, "grad_h_n")};
  if (grad_y.is_none()) return g;
  FloatArg gy;
  if (!float_arg(grad_y, &gy) || gy.nd != 3 || gy.dims[0] != a.steps || gy.dims[1] != a.n || column < 0 ||
      column + a.hs > gy.dims[2]) {
    fail_argument("grad_y", "a C-contiguous float32 array (T, N, >= column + H)", "another");
  }
  g.grad_y = gy.data + column;
  g.ld_grad_y = gy.dims[2];
  return g;
}

py::object lstm_layer(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
                      py::handle c0, bool reverse) {
  const LayerArgs a = parse_layer(4, x, w_ih, w_hh, b_ih, b_hh);
  const float *h0p = a.initial(h0, "h0"), *c0p = a.initial(c0, "c0");
  py::object hs = a.new_states(), cs = a.new_states(), gates = a.new_steps(a.steps, a.cols);
  float *hp = float_data(hs), *cp = float_data(cs), *gp = float_data(gates);
  run_kernel(a.layer_work(),
             [&] { cpu::lstm_layer(a.shape(reverse), a.x.data, a.weights(), h0p, c0p, hp, cp, gp); });
  return py::make_tuple(hs, cs, gates);
}

py::object lstm_layer_backward(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                               py::handle h_states, py::handle c_states, py::handle gates, bool reverse,
                               py::handle grad_y, int64_t column, py::handle grad_h_n, py::handle grad_c_n) {
  const LayerArgs a = parse_layer(4, x, w_ih, w_hh, b_ih, b_hh);
  const float* hsp = a.exact(h_states, "h_states", a.steps + 1, a.hs);
  const float* csp = a.exact(c_states, "c_states", a.steps + 1, a.hs);
  const float* gp = a.exact(gates, "gates", a.steps, a.cols);
  const cpu::LayerOutputGrad g = output_grad(a, grad_y, column, grad_h_n);
  const float* gcn = a.initial(grad_c_n, "grad_c_n");
  py::object gx = a.new_steps(a.steps, a.in), gh0 = new_matrix(a.n, a.hs), gc0 = new_matrix(a.n, a.hs);
  WeightGradOutputs gw(a);
  float *gxp = float_data(gx), *gh0p = float_data(gh0), *gc0p = float_data(gc0);
  run_kernel(a.layer_work(), [&] {
    cpu::lstm_layer_backward(a.shape(reverse), a.x.data, a.weights(), hsp, csp, gp, g, gcn, gxp, gh0p, gc0p,
                             gw.ptrs);
  });
  return py::make_tuple(gx, gh0, gc0, gw.w_ih, gw.w_hh, gw.b_ih, gw.b_hh);
}

py::object gru_layer(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
                     bool reverse, bool linear_before_reset) {
  const LayerArgs a = parse_layer(3, x, w_ih, w_hh, b_ih, b_hh);
  const float* h0p = a.initial(h0, "h0");
  py::object hs = a.new_states(), gi = a.new_steps(a.steps, a.cols), gh = a.new_steps(a.steps, a.cols);
  py::object rh = linear_before_reset ? py::none() : a.new_steps(a.steps, a.hs);
  float *hp = float_data(hs), *gip = float_data(gi), *ghp = float_data(gh);
  float* rhp = linear_before_reset ? nullptr : float_data(rh);
  run_kernel(a.layer_work(), [&] {
    cpu::gru_layer(a.shape(reverse), a.x.data, a.weights(), linear_before_reset, h0p, hp, gip, ghp, rhp);
  });
  return py::make_tuple(hs, gi, gh, rh);
}

py::object gru_layer_backward(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                              py::handle h_states, py::handle gi, py::handle gh, py::handle rh, bool reverse,
                              bool linear_before_reset, py::handle grad_y, int64_t column, py::handle grad_h_n) {
  const LayerArgs a = parse_layer(3, x, w_ih, w_hh, b_ih, b_hh);
  const float* hsp = a.exact(h_states, "h_states", a.steps + 1, a.hs);
  const float* gip = a.exact(gi, "gi", a.steps, a.cols);
  const float* ghp = a.exact(gh, "gh", a.steps, a.cols);
  const float* rhp = linear_before_reset ? nullptr : a.exact(rh, "rh", a.steps, a.hs);
  const cpu::LayerOutputGrad g = output_grad(a, grad_y, column, grad_h_n);
  py::object gx = a.new_steps(a.steps, a.in), gh0 = new_matrix(a.n, a.hs);
  WeightGradOutputs gw(a);
  float *gxp = float_data(gx), *gh0p = float_data(gh0);
  run_kernel(a.layer_work(), [&] {
    cpu::gru_layer_backward(a.shape(reverse), a.x.data, a.weights(), linear_before_reset, hsp, gip, ghp, rhp, g,
                            gxp, gh0p, gw.ptrs);
  });
  return py::make_tuple(gx, gh0, gw.w_ih, gw.w_hh, gw.b_ih, gw.b_hh);
}

py::object rnn_layer(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh, py::handle h0,
                     bool reverse, bool relu) {
  const LayerArgs a = parse_layer(1, x, w_ih, w_hh, b_ih, b_hh);
  const float* h0p = a.initial(h0, "h0");
  py::object hs = a.new_states(), pre = a.new_steps(a.steps, a.hs);
  float *hp = float_data(hs), *pp = float_data(pre);
  run_kernel(a.layer_work(),
             [&] { cpu::rnn_layer(a.shape(reverse), a.x.data, a.weights(), relu, h0p, hp, pp); });
  return py::make_tuple(hs, pre);
}

py::object rnn_layer_backward(py::handle x, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                              py::handle h_states, py::handle pre, bool reverse, bool relu, py::handle grad_y,
                              int64_t column, py::handle grad_h_n) {
  const LayerArgs a = parse_layer(1, x, w_ih, w_hh, b_ih, b_hh);
  const float* hsp = a.exact(h_states, "h_states", a.steps + 1, a.hs);
  const float* pp = a.exact(pre, "pre", a.steps, a.hs);
  const cpu::LayerOutputGrad g = output_grad(a, grad_y, column, grad_h_n);
  py::object gx = a.new_steps(a.steps, a.in), gh0 = new_matrix(a.n, a.hs);
  WeightGradOutputs gw(a);
  float *gxp = float_data(gx), *gh0p = float_data(gh0);
  run_kernel(a.layer_work(), [&] {
    cpu::rnn_layer_backward(a.shape(reverse), a.x.data, a.weights(), relu, hsp, pp, g, gxp, gh0p, gw.ptrs);
  });
  return py::make_tuple(gx, gh0, gw.w_ih, gw.w_hh, gw.b_ih, gw.b_hh);
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
  m.def("lstm_layer", &lstm_layer, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
        py::arg("h0"), py::arg("c0"), py::arg("reverse"));
  m.def("lstm_layer_backward", &lstm_layer_backward, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("h_states"), py::arg("c_states"), py::arg("gates"), py::arg("reverse"),
        py::arg("grad_y"), py::arg("column"), py::arg("grad_h_n"), py::arg("grad_c_n"));
  m.def("gru_layer", &gru_layer, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
        py::arg("h0"), py::arg("reverse"), py::arg("linear_before_reset"));
  m.def("gru_layer_backward", &gru_layer_backward, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("h_states"), py::arg("gi"), py::arg("gh"), py::arg("rh"), py::arg("reverse"),
        py::arg("linear_before_reset"), py::arg("grad_y"), py::arg("column"), py::arg("grad_h_n"));
  m.def("rnn_layer", &rnn_layer, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
        py::arg("h0"), py::arg("reverse"), py::arg("relu"));
  m.def("rnn_layer_backward", &rnn_layer_backward, py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("h_states"), py::arg("pre"), py::arg("reverse"), py::arg("relu"), py::arg("grad_y"),
        py::arg("column"), py::arg("grad_h_n"));
}

}  // namespace minidnn::bindings
