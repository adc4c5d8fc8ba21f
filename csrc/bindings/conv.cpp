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

// Input and output positions are computed as p * stride - pad + r * dil; a
// bound of 2^31 on every extent and parameter keeps that far from int64
// overflow (4 * 2^62 at most).
constexpr int64_t kMaxParam = INT32_MAX;

void check_param(const char* name, int64_t v, int64_t lo) {
  if (v < lo || v > kMaxParam) {
    fail_argument(name, "an int in [" + std::to_string(lo) + ", " + std::to_string(kMaxParam) + "]", std::to_string(v));
  }
}

// An activation or weight array as 4-D extents: rank 4 as it is, rank 3
// (the conv1d layouts (N, C, L) and (K, C/groups, S)) with H = R = 1.
std::array<int64_t, 4> extents4(const char* name, const FloatArg& a, const char* layout) {
  if (a.nd != 4 && a.nd != 3) fail_argument(name, std::string("a 4-D array ") + layout + " (3-D for conv1d)", "shape " + shape_string(a));
  for (int i = 0; i < a.nd; ++i) {
    if (a.dims[i] > kMaxParam) fail_argument(name, "extents of at most " + std::to_string(kMaxParam), "shape " + shape_string(a));
  }
  if (a.nd == 3) return {a.dims[0], a.dims[1], 1, a.dims[2]};
  return {a.dims[0], a.dims[1], a.dims[2], a.dims[3]};
}

// The geometry of a convolution of an input of extents `xd` (N, C, H, W)
// with `weight` (K, C/groups, R, S) into N x K x P x Q, every relation
// checked; `nd` is the rank of the activations (3: conv1d, H = R = 1). The
// names are those of the caller's arguments.
struct GeometryArgs {
  int64_t stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, p, q, groups;
};

ConvGeometry make_geometry(const char* input_name, const std::array<int64_t, 4>& xd, int nd, const FloatArg& weight,
                           const GeometryArgs& a) {
  const std::array<int64_t, 4> wd = extents4("weight", weight, "(K, C/groups, R, S)");
  if (weight.nd != nd) fail_argument("weight", std::to_string(nd) + "-D as " + input_name, "shape " + shape_string(weight));
  for (int64_t e : xd) {
    if (e > kMaxParam) fail_argument(input_name, "extents of at most " + std::to_string(kMaxParam), "more");
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
  if (nd == 3 && xd[2] != 1) fail_argument(input_name, "H = 1 for 3-D (conv1d) arrays", std::to_string(xd[2]));
  if (nd == 3 && (a.p != 1 || a.stride_h != 1 || a.dil_h != 1 || a.pad_top != 0)) {
    fail_argument("p, stride_h, dil_h, pad_top", "1, 1, 1, 0 for 3-D (conv1d) arrays",
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
  if (g.r < 1 || g.s < 1) fail_argument("weight", "a kernel of at least 1 x 1", "shape " + shape_string(weight));
  if (g.k % g.groups != 0) {
    fail_argument("weight", "a first extent divisible by groups = " + std::to_string(g.groups), "shape " + shape_string(weight));
  }
  if (g.c % g.groups != 0) {
    fail_argument(input_name, "channels divisible by groups = " + std::to_string(g.groups), std::to_string(g.c) + " channels");
  }
  if (wd[1] * g.groups != g.c) {
    fail_argument("weight", "shape[1] = " + std::to_string(g.c / g.groups) + " (" + input_name +
                       " channels / groups)", "shape " + shape_string(weight));
  }
  return g;
}

// A ValueError unless an n x c x h x w float32 output fits in memory.
void check_output_size(int64_t n, int64_t c, int64_t h, int64_t w) {
  int64_t nc = 0, hw = 0, all = 0;
  if (__builtin_mul_overflow(n, c, &nc) || __builtin_mul_overflow(h, w, &hw) || __builtin_mul_overflow(nc, hw, &all) ||
      all > (int64_t{1} << 60)) {
    fail_argument("output size", "a product N x K x P x Q that fits in memory",
         std::to_string(n) + " x " + std::to_string(c) + " x " + std::to_string(h) + " x " + std::to_string(w));
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
    fail_argument("bias", "shape (" + std::to_string(channels) + ",) (one value per output channel)", shape_string(*bias));
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
    fail_argument("activation_code", "-1 (none) or 0..3 (relu, leaky_relu, sigmoid, tanh)", std::to_string(activation_code));
  }
  ConvEpilogue ep;
  ep.bias = bias ? bias->data : nullptr;
  ep.activate = activation_code >= 0;
  if (ep.activate) ep.activation = static_cast<Activation>(activation_code);
  ep.alpha = static_cast<float>(alpha);
  return ep;
}

// The route `name` names, if conv2d_forward_route_accepts it for g; else a
// ValueError naming the routes (or the rule's route).
cpu::ConvForwardRoute named_route(const ConvGeometry& g, const std::string& name) {
  using cpu::ConvForwardRoute;
  for (ConvForwardRoute r : {ConvForwardRoute::none, ConvForwardRoute::depthwise, ConvForwardRoute::first_layer,
                             ConvForwardRoute::taps, ConvForwardRoute::winograd, ConvForwardRoute::implicit_gemm}) {
    if (name != cpu::conv_forward_route_name(r)) continue;
    if (!cpu::conv2d_forward_route_accepts(g, r)) {
      fail_argument("route", std::string("a route this geometry can take (the rule's: ") +
                                 cpu::conv_forward_route_name(cpu::conv2d_forward_route(g)) + ")", name);
    }
    return r;
  }
  fail_argument("route", "none, depthwise, first_layer, taps, winograd or implicit_gemm", name);
}

// conv2d_forward's entries: on the rule's route when `route` is null,
// else on the route it names (conv2d_forward_on_route).
py::object conv2d_forward_entry(const std::string* route, py::handle x_arg, py::handle weight_arg,
                                py::handle bias_arg, int64_t stride_h, int64_t stride_w, int64_t dil_h, int64_t dil_w,
                                int64_t pad_top, int64_t pad_left, int64_t p, int64_t q, int64_t groups,
                                int64_t activation_code, double alpha) {
  FloatArg x, weight;
  std::optional<FloatArg> bias;
  if (!float_arg(x_arg, &x) || !float_arg(weight_arg, &weight) || !optional_float_arg(bias_arg, &bias)) {
    return py::none();
  }
  const ConvGeometry g = make_geometry("x", extents4("x", x, "(N, C, H, W)"), x.nd, weight,
                                       GeometryArgs{stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, p, q, groups});
  check_output_size(g.n, g.k, g.p, g.q);
  check_bias(bias, g.k);
  const ConvEpilogue ep = make_epilogue(bias, activation_code, alpha);
  cpu::ConvForwardRoute chosen = cpu::conv2d_forward_route(g);
  if (route != nullptr) chosen = named_route(g, *route);
  py::object y = new_activation(x.nd, g.n, g.k, g.p, g.q);
  float* yp = float_data(y);
  run_kernel(work_of(g), [&] { cpu::conv2d_forward_on_route(chosen, g, x.data, weight.data, ep, yp); });
  return y;
}

py::object conv2d_forward(py::handle x_arg, py::handle weight_arg, py::handle bias_arg, int64_t stride_h,
                          int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t pad_top, int64_t pad_left,
                          int64_t p, int64_t q, int64_t groups, int64_t activation_code, double alpha) {
  return conv2d_forward_entry(nullptr, x_arg, weight_arg, bias_arg, stride_h, stride_w, dil_h, dil_w, pad_top,
                              pad_left, p, q, groups, activation_code, alpha);
}

// The name of the route conv2d_forward takes (conv.h, ConvForwardRoute)
// for conv2d_forward's arguments less the bias and the epilogue, under the
// active ISA: the tests ask, so that each route is tested on its own.
py::object conv2d_forward_route(py::handle x_arg, py::handle weight_arg, int64_t stride_h, int64_t stride_w,
                                int64_t dil_h, int64_t dil_w, int64_t pad_top, int64_t pad_left, int64_t p, int64_t q,
                                int64_t groups) {
  FloatArg x, weight;
  if (!float_arg(x_arg, &x) || !float_arg(weight_arg, &weight)) return py::none();
  const ConvGeometry g = make_geometry("x", extents4("x", x, "(N, C, H, W)"), x.nd, weight,
                                       GeometryArgs{stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, p, q, groups});
  check_output_size(g.n, g.k, g.p, g.q);
  return py::str(cpu::conv_forward_route_name(cpu::conv2d_forward_route(g)));
}

// conv2d_forward's result on the route named `route` ("none", "depthwise",
// "first_layer", "taps", "winograd" or "implicit_gemm"), one that
// conv2d_forward_route_accepts for the geometry, else a ValueError: the
// tests run a route on shapes the rule sends elsewhere.
py::object conv2d_forward_on_route(const std::string& route, py::handle x_arg, py::handle weight_arg,
                                   py::handle bias_arg, int64_t stride_h, int64_t stride_w, int64_t dil_h,
                                   int64_t dil_w, int64_t pad_top, int64_t pad_left, int64_t p, int64_t q,
                                   int64_t groups, int64_t activation_code, double alpha) {
  return conv2d_forward_entry(&route, x_arg, weight_arg, bias_arg, stride_h, stride_w, dil_h, dil_w, pad_top,
                              pad_left, p, q, groups, activation_code, alpha);
}

// The extents of the array an N x K x P x Q convolution output of rank `nd`
// must have, or a ValueError naming `name`.
void check_output_array(const char* name, const FloatArg& a, int nd, const ConvGeometry& g, const char* layout) {
  const std::array<int64_t, 4> want{g.n, g.k, g.p, g.q};
  bool ok = a.nd == nd;
  if (ok) {
    const std::array<int64_t, 4> got = extents4(name, a, layout);
    ok = got == want;
  }
  if (!ok) {
    std::string expected = "shape (" + std::to_string(g.n) + ", " + std::to_string(g.k) + ", ";
    if (nd == 4) expected += std::to_string(g.p) + ", ";
    fail_argument(name, expected + std::to_string(g.q) + ") " + layout, shape_string(a));
  }
}

// out[c] = sum over images and positions of the (N, C, plane) array a, in
// double (one fixed order: deterministic), in 8 partial sums by position
// modulo 8: one chain of dependent adds cost 4 cycles a float, 1.8% of
// conv_transpose2d 4x4/2's forward and backward at N = 8.
void channel_sums(const float* a, int64_t n, int64_t c, int64_t plane, float* out) {
  constexpr int kPartials = 8;
  for (int64_t ch = 0; ch < c; ++ch) {
    double partial[kPartials] = {};
    for (int64_t i = 0; i < n; ++i) {
      const float* src = a + (i * c + ch) * plane;
      int64_t e = 0;
      for (; e + kPartials <= plane; e += kPartials) {
        for (int j = 0; j < kPartials; ++j) partial[j] += src[e + j];
      }
      for (; e < plane; ++e) partial[e % kPartials] += src[e];
    }
    double sum = 0.0;
    for (int j = 0; j < kPartials; ++j) sum += partial[j];
    out[ch] = static_cast<float>(sum);
  }
}

// (grad_x, grad_weight, grad_bias) of conv2d (conv1d with 3-D arrays); P and
// Q are grad_y's.
py::object conv2d_backward(py::handle grad_y_arg, py::handle x_arg, py::handle weight_arg, int64_t stride_h,
                           int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t pad_top, int64_t pad_left,
                           int64_t groups) {
  FloatArg grad_y, x, weight;
  if (!float_arg(grad_y_arg, &grad_y) || !float_arg(x_arg, &x) || !float_arg(weight_arg, &weight)) {
    return py::none();
  }
  const std::array<int64_t, 4> gyd = extents4("grad_y", grad_y, "(N, K, P, Q)");
  const ConvGeometry g = make_geometry(
      "x", extents4("x", x, "(N, C, H, W)"), x.nd, weight,
      GeometryArgs{stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, gyd[2], gyd[3], groups});
  check_output_array("grad_y", grad_y, x.nd, g, "(N, K, P, Q)");
  py::object grad_x = new_activation(x.nd, g.n, g.c, g.h, g.w);
  py::object grad_weight = new_float_array(weight.nd, weight.dims);
  const Py_intptr_t bias_dims[1] = {static_cast<Py_intptr_t>(g.k)};
  py::object grad_bias = new_float_array(1, bias_dims);
  float* gx = float_data(grad_x);
  float* gw = float_data(grad_weight);
  float* gb = float_data(grad_bias);
  run_kernel(work_of(g), [&] {
    cpu::conv2d_backward_data(g, grad_y.data, weight.data, gx);
    cpu::conv2d_backward_weight(g, grad_y.data, x.data, gw, gb);
  });
  return py::make_tuple(grad_x, grad_weight, grad_bias);
}

// The geometry of the convolution whose adjoint is the transposed
// convolution of x (N, C, H, W) with weight (C, K/groups, R, S) into
// (N, K, out_h, out_w): that convolution maps (N, K, out_h, out_w) to
// (N, C, H, W) with weight as its own, the crops as its top / left pads.
ConvGeometry transpose_geometry(const FloatArg& x, const FloatArg& weight, const GeometryArgs& a) {
  const std::array<int64_t, 4> xd = extents4("x", x, "(N, C, H, W)");
  const std::array<int64_t, 4> wd = extents4("weight", weight, "(C, K/groups, R, S)");
  check_param("groups", a.groups, 1);
  if (wd[0] != xd[1]) {
    fail_argument("weight", "shape[0] = " + std::to_string(xd[1]) + " (the channels of x)", "shape " + shape_string(weight));
  }
  // Its P x Q is x's H x W: the p and q of `a` are the transposed output's.
  GeometryArgs conv = a;
  conv.p = xd[2];
  conv.q = xd[3];
  const ConvGeometry g = make_geometry("output", {xd[0], wd[1] * a.groups, a.p, a.q}, x.nd, weight, conv);
  check_output_size(g.n, g.c, g.h, g.w);
  return g;
}

// conv_transpose2d: x (N, C, H, W), weight (C, K/groups, R, S), bias (K,)
// or None -> (N, K, out_h, out_w); crop_top / crop_left as the padding.
py::object conv_transpose2d(py::handle x_arg, py::handle weight_arg, py::handle bias_arg, int64_t stride_h,
                            int64_t stride_w, int64_t dil_h, int64_t dil_w, int64_t crop_top, int64_t crop_left,
                            int64_t out_h, int64_t out_w, int64_t groups) {
  FloatArg x, weight;
  std::optional<FloatArg> bias;
  if (!float_arg(x_arg, &x) || !float_arg(weight_arg, &weight) || !optional_float_arg(bias_arg, &bias)) {
    return py::none();
  }
  const ConvGeometry g = transpose_geometry(
      x, weight, GeometryArgs{stride_h, stride_w, dil_h, dil_w, crop_top, crop_left, out_h, out_w, groups});
  check_bias(bias, g.c);
  py::object y = new_activation(x.nd, g.n, g.c, g.h, g.w);
  float* yp = float_data(y);
  run_kernel(work_of(g), [&] { cpu::conv2d_backward_data(g, x.data, weight.data, yp, bias ? bias->data : nullptr); });
  return y;
}

// (grad_x, grad_weight, grad_bias) of conv_transpose2d; out_h x out_w are grad_y's.
py::object conv_transpose2d_backward(py::handle grad_y_arg, py::handle x_arg, py::handle weight_arg,
                                     int64_t stride_h, int64_t stride_w, int64_t dil_h, int64_t dil_w,
                                     int64_t crop_top, int64_t crop_left, int64_t groups) {
  FloatArg grad_y, x, weight;
  if (!float_arg(grad_y_arg, &grad_y) || !float_arg(x_arg, &x) || !float_arg(weight_arg, &weight)) {
    return py::none();
  }
  const std::array<int64_t, 4> gyd = extents4("grad_y", grad_y, "(N, K, Ho, Wo)");
  const ConvGeometry g = transpose_geometry(
      x, weight, GeometryArgs{stride_h, stride_w, dil_h, dil_w, crop_top, crop_left, gyd[2], gyd[3], groups});
  if (grad_y.nd != x.nd || gyd[0] != g.n || gyd[1] != g.c) {
    fail_argument("grad_y", "shape (" + std::to_string(g.n) + ", " + std::to_string(g.c) + ", ...) (N, K, Ho, Wo) of rank " +
                       std::to_string(x.nd), shape_string(grad_y));
  }
  py::object grad_x = new_activation(x.nd, g.n, g.k, g.p, g.q);
  py::object grad_weight = new_float_array(weight.nd, weight.dims);
  const Py_intptr_t bias_dims[1] = {static_cast<Py_intptr_t>(g.c)};
  py::object grad_bias = new_float_array(1, bias_dims);
  float* gx = float_data(grad_x);
  float* gw = float_data(grad_weight);
  float* gb = float_data(grad_bias);
  run_kernel(work_of(g), [&] {
    // grad_x is the convolution itself applied to grad_y, grad_weight its
    // weight gradient with x in the role of the output gradient.
    cpu::conv2d_forward(g, grad_y.data, weight.data, ConvEpilogue{}, gx);
    cpu::conv2d_backward_weight(g, x.data, grad_y.data, gw, nullptr);
    channel_sums(grad_y.data, g.n, g.c, g.h * g.w, gb);
  });
  return py::make_tuple(grad_x, grad_weight, grad_bias);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("p"), py::arg("q"), py::arg("groups"), py::arg("activation_code"), py::arg("alpha"));
  m.def("conv2d_forward_route", &conv2d_forward_route, py::arg("x"), py::arg("weight"), py::arg("stride_h"),
        py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("p"), py::arg("q"), py::arg("groups"));
  m.def("conv2d_forward_on_route", &conv2d_forward_on_route, py::arg("route"), py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("p"), py::arg("q"), py::arg("groups"),
        py::arg("activation_code"), py::arg("alpha"));
  m.def("conv2d_backward", &conv2d_backward, py::arg("grad_y"), py::arg("x"), py::arg("weight"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("groups"));
  m.def("conv_transpose2d", &conv_transpose2d, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("crop_top"),
        py::arg("crop_left"), py::arg("out_h"), py::arg("out_w"), py::arg("groups"));
  m.def("conv_transpose2d_backward", &conv_transpose2d_backward, py::arg("grad_y"), py::arg("x"), py::arg("weight"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("dil_h"), py::arg("dil_w"), py::arg("crop_top"),
        py::arg("crop_left"), py::arg("groups"));
}

}  // namespace minidnn::bindings
