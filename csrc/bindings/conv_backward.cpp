// Private _C entries of the two conv2d backward drivers (conv.h) in their
// normalized geometry (stride, dilation, top / left padding, the output size
// taken from grad_y), for the tests and for the Python layers of conv2d and
// conv_transpose2d. Callable directly, so every shape relation is checked
// here: a float32 array that is not C-contiguous raises TypeError, any
// inconsistent extent ValueError, before any memory is touched.
#include <array>
#include <climits>
#include <stdexcept>
#include <string>

#include "bindings/common.h"
#include "cpu/conv/conv.h"

namespace minidnn::bindings {
namespace {

// Strides, dilations and pads are bounded so that every index expression of
// the drivers (o * stride - pad + t * dil with o, t below an array extent)
// stays far inside int64.
constexpr int64_t kMaxParam = int64_t{1} << 31;

FloatArg float4d(py::handle h, const char* name) {
  FloatArg a;
  if (!float_arg(h, &a)) {
    throw py::type_error(std::string(name) + ": expected a C-contiguous float32 ndarray");
  }
  if (a.nd != 4) throw std::invalid_argument(std::string(name) + ": expected 4 dimensions, got " + std::to_string(a.nd));
  return a;
}

// A tuple or list of 4 non-negative ints whose product (times 4 bytes) fits.
std::array<int64_t, 4> shape4(py::handle h, const char* name) {
  if (!PyTuple_Check(h.ptr()) && !PyList_Check(h.ptr())) {
    throw py::type_error(std::string(name) + ": expected a tuple of 4 ints");
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(h);
  if (py::len(seq) != 4) throw std::invalid_argument(std::string(name) + ": expected 4 extents");
  std::array<int64_t, 4> dims{};
  int64_t elements = 1;
  for (size_t i = 0; i < 4; ++i) {
    if (!int_arg(seq[i], &dims[i])) throw py::type_error(std::string(name) + ": expected ints that fit int64");
    if (dims[i] < 0) throw std::invalid_argument(std::string(name) + ": negative extent");
    if (__builtin_mul_overflow(elements, dims[i], &elements) || elements > (int64_t{1} << 60)) {
      throw std::invalid_argument(std::string(name) + ": too many elements");
    }
  }
  return dims;
}

void check_param(int64_t v, int64_t lo, const char* name) {
  if (v < lo || v >= kMaxParam || v <= -kMaxParam) {
    throw std::invalid_argument(std::string(name) + ": out of range (" + std::to_string(v) + ")");
  }
}

// The geometry of x (N, C, H, W), weight (K, C/groups, R, S) and
// grad_y (N, K, P, Q), every relation checked.
cpu::ConvGeometry geometry(const std::array<int64_t, 4>& x, const std::array<int64_t, 4>& w,
                           const std::array<int64_t, 4>& y, int64_t stride_h, int64_t stride_w, int64_t dil_h,
                           int64_t dil_w, int64_t pad_top, int64_t pad_left, int64_t groups) {
  check_param(stride_h, 1, "stride_h");
  check_param(stride_w, 1, "stride_w");
  check_param(dil_h, 1, "dil_h");
  check_param(dil_w, 1, "dil_w");
  check_param(pad_top, -kMaxParam + 1, "pad_top");
  check_param(pad_left, -kMaxParam + 1, "pad_left");
  check_param(groups, 1, "groups");
  const auto shape = [](const std::array<int64_t, 4>& d) {
    return "(" + std::to_string(d[0]) + ", " + std::to_string(d[1]) + ", " + std::to_string(d[2]) + ", " +
           std::to_string(d[3]) + ")";
  };
  if (x[1] % groups != 0 || w[0] % groups != 0) {
    throw std::invalid_argument("groups " + std::to_string(groups) + " does not divide the input channels " +
                                std::to_string(x[1]) + " and output channels " + std::to_string(w[0]));
  }
  if (w[1] != x[1] / groups) {
    throw std::invalid_argument("weight " + shape(w) + ": expected " + std::to_string(x[1] / groups) +
                                " channels per group for input " + shape(x));
  }
  if (w[2] < 1 || w[3] < 1 || w[2] >= kMaxParam || w[3] >= kMaxParam) {
    throw std::invalid_argument("weight " + shape(w) + ": kernel extents must be >= 1");
  }
  if (y[0] != x[0] || y[1] != w[0]) {
    throw std::invalid_argument("grad_y " + shape(y) + ": expected (" + std::to_string(x[0]) + ", " +
                                std::to_string(w[0]) + ", P, Q) for input " + shape(x) + " and weight " + shape(w));
  }
  return cpu::ConvGeometry{x[0], x[1], x[2], x[3], w[0], y[2], y[3], w[2], w[3],
                           stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, groups};
}

std::array<int64_t, 4> dims_of(const FloatArg& a) { return {a.dims[0], a.dims[1], a.dims[2], a.dims[3]}; }

std::array<Py_intptr_t, 4> py_dims(const std::array<int64_t, 4>& d) {
  return {static_cast<Py_intptr_t>(d[0]), static_cast<Py_intptr_t>(d[1]), static_cast<Py_intptr_t>(d[2]),
          static_cast<Py_intptr_t>(d[3])};
}

// Multiply-adds of one pass, saturating (run_kernel's work measure).
int64_t conv_work(const cpu::ConvGeometry& g) {
  int64_t work = 1;
  for (int64_t f : {g.n, g.k, g.c / g.groups, g.r, g.s, g.p, g.q}) {
    if (__builtin_mul_overflow(work, f, &work)) return INT64_MAX;
  }
  return work;
}

py::object conv2d_backward_data(py::handle grad_y_arg, py::handle weight_arg, py::handle x_shape_arg,
                                int64_t stride_h, int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t pad_top,
                                int64_t pad_left, int64_t groups) {
  const FloatArg grad_y = float4d(grad_y_arg, "grad_y");
  const FloatArg weight = float4d(weight_arg, "weight");
  const std::array<int64_t, 4> x_shape = shape4(x_shape_arg, "x_shape");
  const cpu::ConvGeometry g = geometry(x_shape, dims_of(weight), dims_of(grad_y), stride_h, stride_w, dil_h, dil_w,
                                       pad_top, pad_left, groups);
  py::object grad_x = new_float_array(4, py_dims(x_shape).data());
  float* gx = float_data(grad_x);
  run_kernel(conv_work(g), [&] { cpu::conv2d_backward_data(g, grad_y.data, weight.data, gx); });
  return grad_x;
}

// The name of the route conv2d_backward_data takes (conv.h,
// ConvBackwardDataRoute) for _conv2d_backward_data's arguments, under the
// active ISA: how the tests know which route a shape of theirs reaches.
std::string conv2d_backward_data_route(py::handle grad_y_arg, py::handle weight_arg, py::handle x_shape_arg,
                                       int64_t stride_h, int64_t stride_w, int64_t dil_h, int64_t dil_w,
                                       int64_t pad_top, int64_t pad_left, int64_t groups) {
  const FloatArg grad_y = float4d(grad_y_arg, "grad_y");
  const FloatArg weight = float4d(weight_arg, "weight");
  const cpu::ConvGeometry g = geometry(shape4(x_shape_arg, "x_shape"), dims_of(weight), dims_of(grad_y), stride_h,
                                       stride_w, dil_h, dil_w, pad_top, pad_left, groups);
  return cpu::conv_backward_data_route_name(cpu::conv2d_backward_data_route(g));
}

py::object conv2d_backward_weight(py::handle grad_y_arg, py::handle x_arg, py::handle weight_shape_arg,
                                  int64_t stride_h, int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t pad_top,
                                  int64_t pad_left, int64_t groups, bool want_bias) {
  const FloatArg grad_y = float4d(grad_y_arg, "grad_y");
  const FloatArg x = float4d(x_arg, "x");
  const std::array<int64_t, 4> w_shape = shape4(weight_shape_arg, "weight_shape");
  const cpu::ConvGeometry g = geometry(dims_of(x), w_shape, dims_of(grad_y), stride_h, stride_w, dil_h, dil_w,
                                       pad_top, pad_left, groups);
  py::object grad_weight = new_float_array(4, py_dims(w_shape).data());
  py::object grad_bias = py::none();
  if (want_bias) {
    const Py_intptr_t bias_dims[1] = {static_cast<Py_intptr_t>(g.k)};
    grad_bias = new_float_array(1, bias_dims);
  }
  float* gw = float_data(grad_weight);
  float* gb = want_bias ? float_data(grad_bias) : nullptr;
  run_kernel(conv_work(g), [&] { cpu::conv2d_backward_weight(g, grad_y.data, x.data, gw, gb); });
  return py::make_tuple(grad_weight, grad_bias);
}

}  // namespace

void bind_conv_backward(py::module_& m) {
  m.def("_conv2d_backward_data", &conv2d_backward_data, py::arg("grad_y"), py::arg("weight"), py::arg("x_shape"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("groups"));
  m.def("_conv2d_backward_data_route", &conv2d_backward_data_route, py::arg("grad_y"), py::arg("weight"),
        py::arg("x_shape"), py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("groups"));
  m.def("_conv2d_backward_weight", &conv2d_backward_weight, py::arg("grad_y"), py::arg("x"),
        py::arg("weight_shape"), py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("groups"), py::arg("want_bias"));
}

}  // namespace minidnn::bindings
