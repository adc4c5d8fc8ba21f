// _C._depthwise_conv2d_forward: a private entry to the depthwise kernel
// (cpu/conv/depthwise.h), so that its tests can run it on every geometry
// without conv2d's algorithm choice in between. It takes the geometry
// already resolved (top / left pads, output size P x Q, as the conv entries
// do) and checks every shape and integer itself, so no call can read or
// write out of bounds: a ValueError names the argument, the expected and
// the given; an array that is not a C-contiguous aligned float32 ndarray is
// a TypeError (no conversion here: callers pass what the kernel reads).
// activation_code (-1 none, else cpu::Activation) and alpha (leaky_relu's
// slope) select the fused epilogue, as in _C.conv2d_forward.
#include <climits>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "bindings/common.h"
#include "cpu/conv/depthwise.h"

namespace minidnn::bindings {
namespace {

using cpu::ConvEpilogue;
using cpu::ConvGeometry;

// Positions are p * stride - pad + r * dil: a bound of 2^31 on every extent
// and parameter keeps them far from int64 overflow.
constexpr int64_t kMaxParam = INT32_MAX;

FloatArg array(const char* name, py::handle h) {
  FloatArg a;
  if (!float_arg(h, &a)) throw py::type_error(std::string(name) + ": expected a C-contiguous float32 ndarray");
  for (int i = 0; i < a.nd; ++i) {
    if (a.dims[i] > kMaxParam) fail_argument(name, "extents of at most " + std::to_string(kMaxParam), "shape " + shape_string(a));
  }
  return a;
}

void check_param(const char* name, int64_t v, int64_t lo) {
  if (v < lo || v > kMaxParam) {
    fail_argument(name, "an int in [" + std::to_string(lo) + ", " + std::to_string(kMaxParam) + "]", std::to_string(v));
  }
}

py::object depthwise_conv2d_forward(py::handle x_arg, py::handle weight_arg, py::handle bias_arg, int64_t stride_h,
                                    int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t pad_top,
                                    int64_t pad_left, int64_t p, int64_t q, int64_t activation_code, double alpha) {
  const FloatArg x = array("x", x_arg);
  const FloatArg weight = array("weight", weight_arg);
  std::optional<FloatArg> bias;
  if (!bias_arg.is_none()) bias = array("bias", bias_arg);
  if (x.nd != 4) fail_argument("x", "a 4-D array (N, C, H, W)", "shape " + shape_string(x));
  if (x.dims[1] < 1) fail_argument("x", "at least one channel", "shape " + shape_string(x));
  const int64_t c = x.dims[1];
  if (weight.nd != 4 || weight.dims[1] != 1 || weight.dims[0] < c || weight.dims[0] % c != 0 ||
      weight.dims[2] < 1 || weight.dims[3] < 1) {
    fail_argument("weight", "shape (C * m, 1, R, S) with C = " + std::to_string(c) + ", m >= 1, R, S >= 1",
         "shape " + shape_string(weight));
  }
  check_param("stride_h", stride_h, 1);
  check_param("stride_w", stride_w, 1);
  check_param("dil_h", dil_h, 1);
  check_param("dil_w", dil_w, 1);
  check_param("pad_top", pad_top, 0);
  check_param("pad_left", pad_left, 0);
  check_param("p", p, 0);
  check_param("q", q, 0);
  ConvGeometry g{};
  g.n = x.dims[0];
  g.c = c;
  g.h = x.dims[2];
  g.w = x.dims[3];
  g.k = weight.dims[0];
  g.r = weight.dims[2];
  g.s = weight.dims[3];
  g.p = p;
  g.q = q;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.dil_h = dil_h;
  g.dil_w = dil_w;
  g.pad_top = pad_top;
  g.pad_left = pad_left;
  g.groups = c;
  if (bias && (bias->nd != 1 || bias->dims[0] != g.k)) {
    fail_argument("bias", "shape (" + std::to_string(g.k) + ",) (one value per output channel)", shape_string(*bias));
  }
  int64_t nk = 0, pq = 0, outputs = 0, work = 0;
  if (__builtin_mul_overflow(g.n, g.k, &nk) || __builtin_mul_overflow(g.p, g.q, &pq) ||
      __builtin_mul_overflow(nk, pq, &outputs) || outputs > (int64_t{1} << 62) / 4) {
    fail_argument("output size", "a product N x K x P x Q that fits in memory",
         std::to_string(g.n) + " x " + std::to_string(g.k) + " x " + std::to_string(g.p) + " x " + std::to_string(g.q));
  }
  if (__builtin_mul_overflow(outputs, g.r * g.s, &work)) work = INT64_MAX;

  const Py_intptr_t dims[4] = {static_cast<Py_intptr_t>(g.n), static_cast<Py_intptr_t>(g.k),
                               static_cast<Py_intptr_t>(g.p), static_cast<Py_intptr_t>(g.q)};
  py::object y = new_float_array(4, dims);
  float* yp = float_data(y);
  if (activation_code < -1 || activation_code > static_cast<int64_t>(cpu::Activation::tanh)) {
    fail_argument("activation_code", "-1 (none) or 0..3 (relu, leaky_relu, sigmoid, tanh)", std::to_string(activation_code));
  }
  ConvEpilogue ep;
  ep.bias = bias ? bias->data : nullptr;
  ep.activate = activation_code >= 0;
  if (ep.activate) ep.activation = static_cast<cpu::Activation>(activation_code);
  ep.alpha = static_cast<float>(alpha);
  run_kernel(work, [&] { cpu::depthwise_kernels().forward(g, x.data, weight.data, ep, yp); });
  return y;
}

}  // namespace

void bind_depthwise(py::module_& m) {
  m.def("_depthwise_conv2d_forward", &depthwise_conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("p"), py::arg("q"), py::arg("activation_code") = -1, py::arg("alpha") = 0.01);
}

}  // namespace minidnn::bindings
