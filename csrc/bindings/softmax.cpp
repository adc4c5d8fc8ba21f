// _C entries of the softmax family: softmax / log_softmax and their
// backwards, cross-entropy and NLL loss forward and backward, each taking the
// public op's arguments and returning its result, or None for arguments the
// Python layer must validate first (see common.h). The loss entries also
// reduce, so a loss costs one _C call.
#include <array>
#include <vector>

#include "bindings/common.h"
#include "cpu/softmax/softmax.h"

namespace minidnn::bindings {
namespace {

using cpu::LossScale;
using cpu::LossTarget;
using cpu::SoftmaxShape;

int64_t product(const Py_intptr_t* dims, int begin, int end) {
  int64_t p = 1;
  for (int i = begin; i < end; ++i) p *= dims[i];
  return p;
}

// x seen as (outer, classes, inner) around `axis_arg`, or false for an axis
// out of range (a 0-d array has the one axis 0 / -1).
bool softmax_shape(const FloatArg& x, py::handle axis_arg, SoftmaxShape* s) {
  int64_t axis = 0;
  if (!int_arg(axis_arg, &axis)) return false;
  const int64_t rank = x.nd > 0 ? x.nd : 1;
  if (axis < -rank || axis >= rank) return false;
  if (x.nd == 0) {
    *s = SoftmaxShape{1, 1, 1};
    return true;
  }
  const int ax = static_cast<int>(axis < 0 ? axis + rank : axis);
  *s = SoftmaxShape{product(x.dims, 0, ax), x.dims[ax], product(x.dims, ax + 1, x.nd)};
  return true;
}

template <bool kLog>
py::object softmax_forward(py::handle x_arg, py::handle axis_arg) {
  FloatArg x;
  SoftmaxShape s;
  if (!float_arg(x_arg, &x) || !softmax_shape(x, axis_arg, &s)) return py::none();
  py::object y = new_float_array(x.nd, x.dims);
  float* yp = float_data(y);
  run_kernel(x.size, [&] {
    if (x.size > 0) cpu::softmax_kernels().softmax(x.data, yp, s, kLog);
  });
  return y;
}

template <bool kLog>
py::object softmax_backward(py::handle grad_y_arg, py::handle y_arg, py::handle axis_arg) {
  FloatArg grad_y, y;
  SoftmaxShape s;
  if (!float_arg(grad_y_arg, &grad_y) || !float_arg(y_arg, &y) || !grad_y.shape_equals(y) ||
      !softmax_shape(y, axis_arg, &s)) {
    return py::none();
  }
  py::object grad_x = new_float_array(y.nd, y.dims);
  float* gxp = float_data(grad_x);
  run_kernel(y.size, [&] {
    if (y.size > 0) cpu::softmax_kernels().softmax_backward(grad_y.data, y.data, gxp, s, kLog);
  });
  return grad_x;
}

// ---------------------------------------------------------------------------
// losses
// ---------------------------------------------------------------------------

enum Reduction { kNone = 0, kMean = 1, kSum = 2 };
constexpr std::array<const char*, 3> kReductions{"none", "mean", "sum"};

// The arguments of a loss, as the kernels take them: logits (N, C, d1..dk)
// or unbatched (C,) seen as (outer, classes, inner) with the class axis 1
// (0 when unbatched); targets class indices shaped like the logits without
// the class axis, or probabilities shaped like the logits.
struct Loss {
  FloatArg x;
  SoftmaxShape shape{};
  LossTarget target;
  int reduction = kMean;
  int target_nd = 0;
  std::array<Py_intptr_t, kMaxDims> target_dims{};
  // "mean" divides by this: the summed weights of the non-ignored class
  // targets, or the element count for probability targets.
  double mean_divisor = 0.0;
  std::vector<float> smoothed_prob;  // probability targets with label smoothing

  int64_t elements() const { return shape.outer * shape.inner; }
};

bool check_class_targets(Loss* loss);

// Partial sums combined in a fixed order.
double sum_of_four(const double* sums) { return (sums[0] + sums[1]) + (sums[2] + sums[3]); }

// Fills `loss` from the Python arguments, or returns false (see common.h).
// Class targets are range-checked here, before any kernel reads through
// them; an out-of-range one returns false and the Python layer raises the
// IndexError. `smoothing` is null for nll_loss, which has no such argument
// and takes class targets only. With `check_targets` false, class targets
// are left to check_class_targets (for a kernel that checks and sums them
// itself).
bool parse_loss(py::handle x_arg, py::handle target_arg, py::handle weight_arg, py::handle ignore_arg,
                py::handle reduction_arg, const py::handle* smoothing_arg, Loss* loss, bool check_targets = true) {
  FloatArg& x = loss->x;
  if (!float_arg(x_arg, &x) || x.nd == 0) return false;
  const int class_axis = x.nd == 1 ? 0 : 1;
  const int64_t classes = x.dims[class_axis];
  if (classes < 1) return false;
  loss->shape = SoftmaxShape{product(x.dims, 0, class_axis), classes, product(x.dims, class_axis + 1, x.nd)};
  loss->target_nd = x.nd - 1;
  for (int i = 0, j = 0; i < x.nd; ++i) {
    if (i != class_axis) loss->target_dims[j++] = x.dims[i];
  }

  LossTarget& t = loss->target;
  double eps = 0.0;
  if (!int_arg(ignore_arg, &t.ignore_index) || !choice_arg(reduction_arg, kReductions, &loss->reduction)) {
    return false;
  }
  if (smoothing_arg != nullptr && (!real_arg(*smoothing_arg, &eps) || !(eps >= 0.0 && eps <= 1.0))) return false;
  t.label_smoothing = static_cast<float>(eps);
  std::optional<FloatArg> weight;
  if (!optional_float_arg(weight_arg, &weight)) return false;
  if (weight) {
    if (weight->nd != 1 || weight->dims[0] != classes) return false;
    t.weight = weight->data;
  }

  FloatArg prob;
  IndexArg index;
  if (smoothing_arg != nullptr && float_arg(target_arg, &prob)) {
    if (!prob.shape_equals(x)) return false;
    t.prob = prob.data;
    if (eps > 0.0) {
      // Mixing the uniform distribution into probability targets costs one
      // pass over them, which keeps the kernels to one form.
      const float keep = static_cast<float>(1.0 - eps);
      const float uniform = static_cast<float>(eps / static_cast<double>(classes));
      loss->smoothed_prob.resize(static_cast<size_t>(prob.size));
      for (int64_t i = 0; i < prob.size; ++i) loss->smoothed_prob[i] = prob.data[i] * keep + uniform;
      t.prob = loss->smoothed_prob.data();
    }
    loss->mean_divisor = static_cast<double>(loss->elements());
    return true;
  }
  if (!index_arg(target_arg, &index) || !index.shape_is(loss->target_nd, loss->target_dims.data())) return false;
  t.index = index.data;
  return !check_targets || check_class_targets(loss);
}

// Range-checks the class targets of a parsed loss and sums its mean divisor
// (the weights of the non-ignored targets); false for one out of range.
bool check_class_targets(Loss* loss) {
  const LossTarget& t = loss->target;
  const int64_t n = loss->elements();
  // Four running sums: one chain of dependent double additions would take
  // 4 cycles a target (2 us on 1000 targets, more than the kernel).
  double weight_sums[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t counted = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = t.index[i];
    if (c == t.ignore_index) continue;
    if (c < 0 || c >= loss->shape.classes) return false;
    if (t.weight != nullptr) weight_sums[i & 3] += static_cast<double>(t.weight[c]);
    ++counted;
  }
  loss->mean_divisor = t.weight != nullptr ? sum_of_four(weight_sums) : static_cast<double>(counted);
  return true;
}

// The reduced loss (0-d) or the per-element losses (target-shaped).
template <class Kernel>
py::object loss_forward(const Loss& loss, Kernel kernel) {
  const int64_t n = loss.elements();
  std::vector<double> per_element(static_cast<size_t>(n));
  int64_t bad = 0;
  run_kernel(loss.x.size, [&] {
    if (n > 0) bad = kernel(loss.x.data, loss.target, loss.shape, per_element.data());
  });
  // parse_loss checked the targets; the kernels check again, for targets
  // another Python thread rewrote while the GIL was released.
  if (bad > 0) return py::none();
  if (loss.reduction == kNone) {
    py::object out = new_float_array(loss.target_nd, loss.target_dims.data());
    float* op = float_data(out);
    for (int64_t i = 0; i < n; ++i) op[i] = static_cast<float>(per_element[i]);
    return out;
  }
  double sums[4] = {0.0, 0.0, 0.0, 0.0};  // four chains, as parse_loss's weight sums
  for (int64_t i = 0; i < n; ++i) sums[i & 3] += per_element[i];
  double total = sum_of_four(sums);
  if (loss.reduction == kMean) total /= loss.mean_divisor;  // 0 / 0 = NaN when every target is ignored
  return new_float_scalar(static_cast<float>(total));
}

// The gradient scale of each element: grad_loss as an array shaped like the
// per-element loss for "none", else a float (divided by the mean divisor
// for "mean").
bool parse_scale(py::handle grad_loss_arg, const Loss& loss, LossScale* scale, FloatArg* per_element) {
  if (loss.reduction == kNone) {
    if (!float_arg(grad_loss_arg, per_element) || !per_element->shape_is(loss.target_nd, loss.target_dims.data())) {
      return false;
    }
    scale->per_element = per_element->data;
    return true;
  }
  double g = 0.0;
  if (float_arg(grad_loss_arg, per_element) && per_element->nd == 0) {
    g = per_element->data[0];  // a 0-d float32 array, as the loss forward returns
  } else if (!real_arg(grad_loss_arg, &g)) {
    return false;
  }
  if (loss.reduction == kMean) g /= loss.mean_divisor;
  scale->scalar = static_cast<float>(g);
  return true;
}

py::object cross_entropy(py::handle logits, py::handle target, py::handle weight, py::handle ignore_index,
                         py::handle reduction, py::handle label_smoothing) {
  Loss loss;
  if (!parse_loss(logits, target, weight, ignore_index, reduction, &label_smoothing, &loss)) return py::none();
  return loss_forward(loss, cpu::softmax_kernels().cross_entropy);
}

py::object nll_loss(py::handle log_probs, py::handle target, py::handle weight, py::handle ignore_index,
                    py::handle reduction) {
  Loss loss;
  if (!parse_loss(log_probs, target, weight, ignore_index, reduction, nullptr, &loss, false)) return py::none();
  if (loss.reduction != kNone && loss.elements() <= cpu::kNllReducedMaxTargets) {
    // One pass over few targets: the range check, the gather and both sums
    // (1000 targets: three passes cost more than PyTorch's whole call).
    double total = 0.0, weight_total = 0.0;
    if (cpu::nll_loss_reduced(loss.x.data, loss.target, loss.shape, &total, &weight_total) > 0) return py::none();
    if (loss.reduction == kMean) total /= weight_total;  // 0 / 0 = NaN when every target is ignored
    return new_float_scalar(static_cast<float>(total));
  }
  if (!check_class_targets(&loss)) return py::none();
  return loss_forward(loss, cpu::nll_loss_forward);
}

// grad of the loss wrt its input, from kernel(loss, scale, grad), which
// returns how many targets it found out of range (see loss_forward).
template <class Kernel>
py::object loss_backward(py::handle grad_loss, const Loss& loss, Kernel kernel) {
  LossScale scale;
  FloatArg per_element;
  if (!parse_scale(grad_loss, loss, &scale, &per_element)) return py::none();
  py::object grad = new_float_array(loss.x.nd, loss.x.dims);
  float* gp = float_data(grad);
  int64_t bad = 0;
  run_kernel(loss.x.size, [&] {
    if (loss.x.size > 0) bad = kernel(loss, scale, gp);
  });
  return bad > 0 ? py::none() : grad;
}

py::object cross_entropy_backward(py::handle grad_loss, py::handle logits, py::handle target, py::handle weight,
                                  py::handle ignore_index, py::handle reduction, py::handle label_smoothing) {
  Loss loss;
  if (!parse_loss(logits, target, weight, ignore_index, reduction, &label_smoothing, &loss)) return py::none();
  return loss_backward(grad_loss, loss, [](const Loss& l, LossScale scale, float* grad) {
    return cpu::softmax_kernels().cross_entropy_backward(l.x.data, l.target, l.shape, scale, grad);
  });
}

py::object nll_loss_backward(py::handle grad_loss, py::handle log_probs, py::handle target, py::handle weight,
                             py::handle ignore_index, py::handle reduction) {
  Loss loss;
  if (!parse_loss(log_probs, target, weight, ignore_index, reduction, nullptr, &loss)) return py::none();
  return loss_backward(grad_loss, loss, [](const Loss& l, LossScale scale, float* grad) {
    return cpu::nll_loss_backward(l.target, l.shape, scale, grad);
  });
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("softmax", &softmax_forward<false>, py::arg("x"), py::arg("axis"));
  m.def("log_softmax", &softmax_forward<true>, py::arg("x"), py::arg("axis"));
  m.def("softmax_backward", &softmax_backward<false>, py::arg("grad_y"), py::arg("y"), py::arg("axis"));
  m.def("log_softmax_backward", &softmax_backward<true>, py::arg("grad_y"), py::arg("y"), py::arg("axis"));
  m.def("cross_entropy", &cross_entropy, py::arg("logits"), py::arg("target"), py::arg("weight"),
        py::arg("ignore_index"), py::arg("reduction"), py::arg("label_smoothing"));
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("grad_loss"), py::arg("logits"),
        py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
        py::arg("label_smoothing"));
  m.def("nll_loss", &nll_loss, py::arg("log_probs"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"),
        py::arg("reduction"));
  m.def("nll_loss_backward", &nll_loss_backward, py::arg("grad_loss"), py::arg("log_probs"), py::arg("target"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"));
}

}  // namespace minidnn::bindings
