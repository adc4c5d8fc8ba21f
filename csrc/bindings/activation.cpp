// _C bindings of the elementwise activations.
#include "bindings/common.h"
#include "cpu/activation/activation.h"

namespace minidnn::bindings {
namespace {

void activation_forward(cpu::Activation f, const Array<float>& x, Array<float>& y, float alpha) {
  const int64_t n = x.size();
  const float* xp = input(x, n, "x");
  float* yp = output(y, n, "out");
  py::gil_scoped_release nogil;
  if (n > 0) cpu::activation_kernels().forward(f, xp, yp, n, alpha);
}

void activation_backward(cpu::Activation f, const Array<float>& grad_y, const Array<float>& saved, Array<float>& grad_x,
                         float alpha) {
  const int64_t n = grad_y.size();
  const float* gp = input(grad_y, n, "grad_y");
  const float* sp = input(saved, n, "saved");
  float* gxp = output(grad_x, n, "out");
  py::gil_scoped_release nogil;
  if (n > 0) cpu::activation_kernels().backward(f, gp, sp, gxp, n, alpha);
}

}  // namespace

void bind_activation(py::module_& m) {
  py::enum_<cpu::Activation>(m, "Activation")
      .value("relu", cpu::Activation::relu)
      .value("leaky_relu", cpu::Activation::leaky_relu)
      .value("sigmoid", cpu::Activation::sigmoid)
      .value("tanh", cpu::Activation::tanh);
  m.def("activation_forward", &activation_forward, py::arg("kind"), py::arg("x"), py::arg("out").noconvert(),
        py::arg("alpha"));
  m.def("activation_backward", &activation_backward, py::arg("kind"), py::arg("grad_y"), py::arg("saved"),
        py::arg("out").noconvert(), py::arg("alpha"));
}

}  // namespace minidnn::bindings
