// _C bindings of the softmax family: softmax / log_softmax, cross-entropy
// and NLL, forward and backward. Arrays arrive validated and contiguous
// from python/minidnn/softmax.py; every kernel runs without the GIL.
#include <optional>
#include <stdexcept>
#include <string>

#include "bindings/common.h"
#include "cpu/softmax/softmax.h"

namespace minidnn::bindings {
namespace {

using cpu::LossScale;
using cpu::LossTarget;
using cpu::SoftmaxShape;

SoftmaxShape make_shape(int64_t outer, int64_t classes, int64_t inner) {
  checked_product(outer, classes, inner);
  if (classes < 1) throw std::invalid_argument("classes: expected at least 1, got " + std::to_string(classes));
  return SoftmaxShape{outer, classes, inner};
}

void throw_if_bad_targets(int64_t bad) {
  if (bad > 0) {
    throw std::out_of_range("target: " + std::to_string(bad) + " class indices out of range");
  }
}

struct TargetArgs {
  std::optional<Array<int64_t>> index;
  std::optional<Array<float>> prob;
  std::optional<Array<float>> weight;
  int64_t ignore_index;
  float label_smoothing;

  LossTarget resolve(SoftmaxShape s) const {
    if (index.has_value() == prob.has_value()) {
      throw std::invalid_argument("target: expected exactly one of class indices and probabilities");
    }
    LossTarget t;
    t.index = optional_input(index, s.outer * s.inner, "target");
    t.prob = optional_input(prob, s.outer * s.classes * s.inner, "target");
    t.weight = optional_input(weight, s.classes, "weight");
    t.ignore_index = ignore_index;
    t.label_smoothing = label_smoothing;
    return t;
  }
};

void softmax_forward(const Array<float>& x, Array<float>& y, int64_t outer, int64_t classes, int64_t inner,
                     bool log) {
  const SoftmaxShape s = make_shape(outer, classes, inner);
  const int64_t n = s.outer * s.classes * s.inner;
  const float* xp = input(x, n, "x");
  float* yp = output(y, n, "out");
  py::gil_scoped_release nogil;
  if (n > 0) cpu::softmax_kernels().softmax(xp, yp, s, log);
}

void softmax_backward(const Array<float>& grad_y, const Array<float>& y, Array<float>& grad_x, int64_t outer,
                      int64_t classes, int64_t inner, bool log) {
  const SoftmaxShape s = make_shape(outer, classes, inner);
  const int64_t n = s.outer * s.classes * s.inner;
  const float* gp = input(grad_y, n, "grad_y");
  const float* yp = input(y, n, "y");
  float* gxp = output(grad_x, n, "out");
  py::gil_scoped_release nogil;
  if (n > 0) cpu::softmax_kernels().softmax_backward(gp, yp, gxp, s, log);
}

// A loss forward: the unreduced loss of every element into `loss`.
template <class Kernel>
void loss_forward(const Array<float>& x, const char* x_name, const TargetArgs& target, int64_t outer,
                  int64_t classes, int64_t inner, Array<double>& loss, Kernel kernel) {
  const SoftmaxShape s = make_shape(outer, classes, inner);
  const float* xp = input(x, s.outer * s.classes * s.inner, x_name);
  const LossTarget t = target.resolve(s);
  double* lp = output(loss, s.outer * s.inner, "out");
  int64_t bad = 0;
  {
    py::gil_scoped_release nogil;
    if (s.outer * s.inner > 0) bad = kernel(xp, t, s, lp);
  }
  throw_if_bad_targets(bad);
}

void cross_entropy(const Array<float>& logits, const TargetArgs& target, int64_t outer, int64_t classes,
                   int64_t inner, Array<double>& loss) {
  loss_forward(logits, "logits", target, outer, classes, inner, loss, cpu::softmax_kernels().cross_entropy);
}

void nll_loss(const Array<float>& log_probs, const TargetArgs& target, int64_t outer, int64_t classes,
              int64_t inner, Array<double>& loss) {
  loss_forward(log_probs, "log_probs", target, outer, classes, inner, loss, cpu::nll_loss_forward);
}

LossScale make_scale(const std::optional<Array<float>>& per_element, float scalar, SoftmaxShape s) {
  return LossScale{optional_input(per_element, s.outer * s.inner, "grad_loss"), scalar};
}

void cross_entropy_backward(const Array<float>& logits, const TargetArgs& target, int64_t outer, int64_t classes,
                            int64_t inner, const std::optional<Array<float>>& scale_per_element,
                            float scale_scalar, Array<float>& grad) {
  const SoftmaxShape s = make_shape(outer, classes, inner);
  const int64_t n = s.outer * s.classes * s.inner;
  const float* xp = input(logits, n, "logits");
  const LossTarget t = target.resolve(s);
  const LossScale scale = make_scale(scale_per_element, scale_scalar, s);
  float* gp = output(grad, n, "out");
  int64_t bad = 0;
  {
    py::gil_scoped_release nogil;
    if (n > 0) bad = cpu::softmax_kernels().cross_entropy_backward(xp, t, s, scale, gp);
  }
  throw_if_bad_targets(bad);
}

void nll_loss_backward(const TargetArgs& target, int64_t outer, int64_t classes, int64_t inner,
                       const std::optional<Array<float>>& scale_per_element, float scale_scalar, Array<float>& grad) {
  const SoftmaxShape s = make_shape(outer, classes, inner);
  const LossTarget t = target.resolve(s);
  const LossScale scale = make_scale(scale_per_element, scale_scalar, s);
  float* gp = output(grad, s.outer * s.classes * s.inner, "out");
  int64_t bad = 0;
  {
    py::gil_scoped_release nogil;
    bad = cpu::nll_loss_backward(t, s, scale, gp);
  }
  throw_if_bad_targets(bad);
}

}  // namespace

void bind_softmax(py::module_& m) {
  py::class_<TargetArgs>(m, "LossTarget")
      .def(py::init<std::optional<Array<int64_t>>, std::optional<Array<float>>, std::optional<Array<float>>,
                    int64_t, float>(),
           py::arg("index"), py::arg("prob"), py::arg("weight"), py::arg("ignore_index"),
           py::arg("label_smoothing"));
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("out").noconvert(), py::arg("outer"),
        py::arg("classes"), py::arg("inner"), py::arg("log"));
  m.def("softmax_backward", &softmax_backward, py::arg("grad_y"), py::arg("y"), py::arg("out").noconvert(),
        py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("log"));
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("target"), py::arg("outer"),
        py::arg("classes"), py::arg("inner"), py::arg("out").noconvert());
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("logits"), py::arg("target"), py::arg("outer"),
        py::arg("classes"), py::arg("inner"), py::arg("scale_per_element"), py::arg("scale"),
        py::arg("out").noconvert());
  m.def("nll_loss", &nll_loss, py::arg("log_probs"), py::arg("target"), py::arg("outer"), py::arg("classes"),
        py::arg("inner"), py::arg("out").noconvert());
  m.def("nll_loss_backward", &nll_loss_backward, py::arg("target"), py::arg("outer"), py::arg("classes"),
        py::arg("inner"), py::arg("scale_per_element"), py::arg("scale"), py::arg("out").noconvert());
}

}  // namespace minidnn::bindings
