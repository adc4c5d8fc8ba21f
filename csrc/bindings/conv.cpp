// _C entries of convolution. Unlike the other families' entries, these take
// the geometry already normalized by python/minidnn/conv.py (padding forms
// resolved to the top / left pads and the output size P x Q), because
// resolving the padding forms is Python-level work anyway; so that a direct
// call can never read or write out of bounds, every entry checks every
// relation between the shapes and the integers itself and raises ValueError
// (naming the argument, the expected and the given) when one fails. Arrays
// that are not C-contiguous aligned float32 make an entry return None: the
// Python layer converts them once and calls again.
#include <array>
#include <climits>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "bindings/common.h"
#include "cpu/activation/activation.h"
#include "cpu/conv/conv.h"

namespace minidnn::bindings {
namespace {

using cpu::Activation;
using cpu::ConvEpilogue;
using cpu::ConvGeometry;

[[noreturn]] void fail(const std::string& name, const std::string& expected, const std::string& got) {
  throw std::invalid_argument(name + ": expected " + expected + ", got " + got);
}

std::string shape_str(const FloatArg& a) {
  std::string s = "(";
  for (int i = 0; i < a.nd; ++i) s += (i ? ", " : "") + std::to_string(a.dims[i]);
  return s + (a.nd == 1 ? ",)" : ")");
}

// Input and output positions are computed as p * stride - pad + r * dil; a
// bound of 2^31 on every extent and parameter keeps that far from int64
// overflow (4 * 2^62 at most).
constexpr int64_t kMaxParam = INT32_MAX;

void check_param(const char* name, int64_t v, int64_t lo) {
  if (v < lo || v > kMaxParam) {
    fail(name, "an int in [" + std::to_string(lo) + ", " + std::to_string(kMaxParam) + "]", std::to_string(v));
  }
}

// An activation or weight array as 4-D extents: rank 4 as it is, rank 3
// (the conv1d layouts (N, C, L) and (K, C/groups, S)) with H = R = 1.
std::array<int64_t, 4> extents4(const char* name, const FloatArg& a, const char* layout) {
  if (a.nd != 4 && a.nd != 3) fail(name, std::string("a 4-D array ") + layout + " (3-D for conv1d)", "shape " + shape_str(a));
  for (int i = 0; i < a.nd; ++i) {
    if (a.dims[i] > kMaxParam) fail(name, "extents of at most " + std::to_string(kMaxParam), "shape " + shape_str(a));
  }
  if (a.nd == 3) return {a.dims[0], a.dims[1], 1, a.dims[2]};
  return {a.dims[0], a.dims[1], a.dims[2], a.dims[3]};
}

// The geometry of a convolution of `input` (N, C, H, W) with `weight`
// (K, C/groups, R, S) into N x K x P x Q, every relation checked (both
// arrays 3-D: the conv1d layouts, H = R = 1). The names are those of the
// caller's arguments.
struct GeometryArgs {
  int64_t stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, p, q, groups;
};

ConvGeometry make_geometry(const char* input_name, const FloatArg& input, const FloatArg& weight, const GeometryArgs& a) {
  const std::array<int64_t, 4> xd = extents4(input_name, input, "(N, C, H, W)");
  const std::array<int64_t, 4> wd = extents4("weight", weight, "(K, C/groups, R, S)");
  if (input.nd != weight.nd) {
    fail("weight", std::to_string(input.nd) + "-D as " + input_name, "shape " + shape_str(weight));
  }
  check_param("stride_h", a.stride_h, 1);
  check_param("stride_w", a.stride_w, 1);
  check_param("dil_h", a.dil_h, 1);
  check_param("dil_w", a.dil_w, 1);
  check_param("pad_top", a.pad_top, 0);
  check_param("pad_left", a.pad_left, 0);
  check_param("p", a.p, 0);
  check_param("q", a.q, 0);
  check_param("groups", a.groups, 1);
  if (input.nd == 3 && (a.p != 1 || a.stride_h != 1 || a.dil_h != 1 || a.pad_top != 0)) {
    fail("p, stride_h, dil_h, pad_top", "1, 1, 1, 0 for 3-D (conv1d) arrays",
         std::to_string(a.p) + ", " + std::to_string(a.stride_h) + ", " + std::to_string(a.dil_h) + ", " +
             std::to_string(a.pad_top));
  }
  ConvGeometry g{};
  g.n = xd[0];
  g.c = xd[1];
  g.h = xd[2];
  g.w = xd[3];
  g.k = wd[0];
  g.r = wd[2];
  g.s = wd[3];
  g.p = a.p;
  g.q = a.q;
  g.stride_h = a.stride_h;
  g.stride_w = a.stride_w;
  g.dil_h = a.dil_h;
  g.dil_w = a.dil_w;
  g.pad_top = a.pad_top;
  g.pad_left = a.pad_left;
  g.groups = a.groups;
  if (g.r < 1 || g.s < 1) fail("weight", "a kernel of at least 1 x 1", "shape " + shape_str(weight));
  if (g.k % g.groups != 0) {
    fail("weight", "a first extent divisible by groups = " + std::to_string(g.groups), "shape " + shape_str(weight));
  }
  if (g.c % g.groups != 0) {
    fail(input_name, "channels divisible by groups = " + std::to_string(g.groups), "shape " + shape_str(input));
  }
  if (wd[1] * g.groups != g.c) {
    fail("weight", "shape[1] = " + std::to_string(g.c / g.groups) + " (" + input_name +
                       " channels / groups)", "shape " + shape_str(weight));
  }
  return g;
}

// Elements of an N x K x P x Q array, or a ValueError if that overflows.
void check_output_size(const ConvGeometry& g) {
  int64_t nk = 0, pq = 0, all = 0;
  if (__builtin_mul_overflow(g.n, g.k, &nk) || __builtin_mul_overflow(g.p, g.q, &pq) ||
      __builtin_mul_overflow(nk, pq, &all) || all > (int64_t{1} << 62) / 4) {
    fail("output size", "a product N x K x P x Q that fits in memory",
         std::to_string(g.n) + " x " + std::to_string(g.k) + " x " + std::to_string(g.p) + " x " + std::to_string(g.q));
  }
}

int64_t work_of(const ConvGeometry& g) {
  int64_t w = 1;
  for (int64_t e : {g.n, g.k, g.p, g.q, g.c / g.groups, g.r, g.s}) {
    if (__builtin_mul_overflow(w, e, &w)) return INT64_MAX;
  }
  return w;
}

void check_bias(const std::optional<FloatArg>& bias, int64_t channels) {
  if (bias && (bias->nd != 1 || bias->dims[0] != channels)) {
    fail("bias", "shape (" + std::to_string(channels) + ",) (one value per output channel)", shape_str(*bias));
  }
}

// A new (N, C, H, W) array, or (N, C, W) when `nd` is 3 (conv1d; H == 1).
py::object new_activation(int nd, int64_t n, int64_t c, int64_t h, int64_t w) {
  const Py_intptr_t dims4[4] = {static_cast<Py_intptr_t>(n), static_cast<Py_intptr_t>(c), static_cast<Py_intptr_t>(h),
                                static_cast<Py_intptr_t>(w)};
  const Py_intptr_t dims3[3] = {dims4[0], dims4[1], dims4[3]};
  return nd == 3 ? new_float_array(3, dims3) : new_float_array(4, dims4);
}

// activation_code: -1 none, else the cpu::Activation value.
ConvEpilogue make_epilogue(const std::optional<FloatArg>& bias, int64_t activation_code, double alpha) {
  if (activation_code < -1 || activation_code > static_cast<int64_t>(Activation::tanh)) {
    fail("activation_code", "-1 (none) or 0..3 (relu, leaky_relu, sigmoid, tanh)", std::to_string(activation_code));
  }
  ConvEpilogue ep;
  ep.bias = bias ? bias->data : nullptr;
  ep.activate = activation_code >= 0;
  if (ep.activate) ep.activation = static_cast<Activation>(activation_code);
  ep.alpha = static_cast<float>(alpha);
  return ep;
}

py::object conv2d_forward(py::handle x_arg, py::handle weight_arg, py::handle bias_arg, int64_t stride_h,
                          int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t pad_top, int64_t pad_left,
                          int64_t p, int64_t q, int64_t groups, int64_t activation_code, double alpha) {
  FloatArg x, weight;
  std::optional<FloatArg> bias;
  if (!float_arg(x_arg, &x) || !float_arg(weight_arg, &weight) || !optional_float_arg(bias_arg, &bias)) {
    return py::none();
  }
  const ConvGeometry g =
      make_geometry("x", x, weight, GeometryArgs{stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, p, q, groups});
  check_output_size(g);
  check_bias(bias, g.k);
  const ConvEpilogue ep = make_epilogue(bias, activation_code, alpha);
  py::object y = new_activation(x.nd, g.n, g.k, g.p, g.q);
  float* yp = float_data(y);
  run_kernel(work_of(g), [&] { cpu::conv2d_forward(g, x.data, weight.data, ep, yp); });
  return y;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("p"), py::arg("q"), py::arg("groups"), py::arg("activation_code"), py::arg("alpha"));
}

}  // namespace minidnn::bindings
