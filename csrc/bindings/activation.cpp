// _C entries of the elementwise activations: relu(x), relu_backward(grad_y,
// x), ... Each returns the output, or None for arguments the Python layer
// must validate first (see common.h).
#include "bindings/common.h"
#include "cpu/activation/activation.h"

namespace minidnn::bindings {
namespace {

using cpu::Activation;

py::object forward(Activation f, py::handle x_arg, double alpha) {
  FloatArg x;
  if (!float_arg(x_arg, &x)) return py::none();
  py::object y = new_float_array(x.nd, x.dims);
  float* yp = float_data(y);
  run_kernel(x.size, [&] {
    if (x.size > 0) cpu::activation_kernels().forward(f, x.data, yp, x.size, static_cast<float>(alpha));
  });
  return y;
}

py::object backward(Activation f, py::handle grad_y_arg, py::handle saved_arg, double alpha) {
  FloatArg grad_y, saved;
  if (!float_arg(grad_y_arg, &grad_y) || !float_arg(saved_arg, &saved) || !grad_y.shape_equals(saved)) {
    return py::none();
  }
  py::object grad_x = new_float_array(saved.nd, saved.dims);
  float* gxp = float_data(grad_x);
  run_kernel(saved.size, [&] {
    if (saved.size > 0) {
      cpu::activation_kernels().backward(f, grad_y.data, saved.data, gxp, saved.size, static_cast<float>(alpha));
    }
  });
  return grad_x;
}

template <Activation F>
void bind_one(py::module_& m, const char* name, const char* backward_name, const char* saved_name) {
  m.def(name, [](py::handle x) { return forward(F, x, 0.0); }, py::arg("x"));
  m.def(
      backward_name, [](py::handle grad_y, py::handle saved) { return backward(F, grad_y, saved, 0.0); },
      py::arg("grad_y"), py::arg(saved_name));
}

}  // namespace

void bind_activation(py::module_& m) {
  bind_one<Activation::relu>(m, "relu", "relu_backward", "x");
  bind_one<Activation::sigmoid>(m, "sigmoid", "sigmoid_backward", "y");
  bind_one<Activation::tanh>(m, "tanh", "tanh_backward", "y");
  // leaky_relu's slope: an exact int or float, else None (validated in Python).
  m.def(
      "leaky_relu",
      [](py::handle x, py::handle slope) -> py::object {
        double alpha = 0.0;
        return real_arg(slope, &alpha) ? forward(Activation::leaky_relu, x, alpha) : py::none();
      },
      py::arg("x"), py::arg("negative_slope"));
  m.def(
      "leaky_relu_backward",
      [](py::handle grad_y, py::handle x, py::handle slope) -> py::object {
        double alpha = 0.0;
        return real_arg(slope, &alpha) ? backward(Activation::leaky_relu, grad_y, x, alpha) : py::none();
      },
      py::arg("grad_y"), py::arg("x"), py::arg("negative_slope"));
}

}  // namespace minidnn::bindings
