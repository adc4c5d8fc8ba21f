// The private extension module: one bind_<family> per binding file.
#include "bindings/common.h"

namespace minidnn::bindings {
void bind_runtime(py::module_& m);
void bind_output_settings(py::module_& m);
void bind_softmax(py::module_& m);
void bind_activation(py::module_& m);
void bind_linear(py::module_& m);
void bind_conv(py::module_& m);
void bind_conv_backward(py::module_& m);
void bind_depthwise(py::module_& m);
void bind_recurrent(py::module_& m);
void bind_pooling(py::module_& m);
void bind_cuda(py::module_& m);
}  // namespace minidnn::bindings

PYBIND11_MODULE(_C, m) {
  m.doc() = "minidnn kernels (private: use the minidnn package)";
  m.attr("__version__") = MINIDNN_VERSION;
  minidnn::bindings::bind_runtime(m);
  minidnn::bindings::bind_output_settings(m);
  minidnn::bindings::bind_softmax(m);
  minidnn::bindings::bind_activation(m);
  minidnn::bindings::bind_linear(m);
  minidnn::bindings::bind_conv(m);
  minidnn::bindings::bind_conv_backward(m);
  minidnn::bindings::bind_depthwise(m);
  minidnn::bindings::bind_recurrent(m);
  minidnn::bindings::bind_pooling(m);
  minidnn::bindings::bind_cuda(m);
}
