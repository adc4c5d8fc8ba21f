// _C entries of the recurrent cells (forward and backward), each returning
// its result or None for arguments the Python layer must validate first
// (see common.h).
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
}

}  // namespace minidnn::bindings
