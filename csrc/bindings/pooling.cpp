// _C entries of pooling. As the convolution entries, these take the
// parameters already normalized by python/minidnn/pooling.py (kernel,
// stride, dilation as (h, w) ints, padding as top / bottom / left / right)
// and compute the output extents themselves, checking every relation
// (raising ValueError naming the argument, the expected and the given), so
// that a direct call can never read or write out of bounds. Indices handed
// to a backward or an unpool are range-checked by the kernel: IndexError,
// never a write outside the output. Arrays that are not C-contiguous
// aligned float32 / int64 make an entry return None: the Python layer
// converts them once and calls again.
//
// 3-D arrays (N, C, L) are the 1-D forms: H = 1, with the H parameters 1
// (kernel, stride, dilation) and 0 (pads).
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "cpu/pooling/pooling.h"

namespace minidnn::bindings {
namespace {

using cpu::PoolAxis;
using cpu::PoolGeometry;

// Positions are o * stride - pad + j * dilation: a bound of 2^31 on every
// extent and parameter keeps them far from int64 overflow.
constexpr int64_t kMaxParam = INT32_MAX;

void check_param(const char* name, int64_t v, int64_t lo) {
  if (v < lo || v > kMaxParam) {
    fail_argument(name, "an int in [" + std::to_string(lo) + ", " + std::to_string(kMaxParam) + "]", std::to_string(v));
  }
}

// (N, C, H, W) of a 4-D array, or of a 3-D (N, C, L) one as H = 1.
struct Extents {
  int nd = 4;
  int64_t n = 0, c = 0, h = 0, w = 0;
};

template <class T>
Extents extents_of(const char* name, const ArrayArg<T>& a) {
  if (a.nd != 4 && a.nd != 3) fail_argument(name, "a 4-D array (N, C, H, W) or a 3-D one (N, C, L)", "shape " + shape_string(a));
  for (int i = 0; i < a.nd; ++i) {
    if (a.dims[i] > kMaxParam) fail_argument(name, "extents of at most " + std::to_string(kMaxParam), "shape " + shape_string(a));
  }
  if (a.nd == 3) return {3, a.dims[0], a.dims[1], 1, a.dims[2]};
  return {4, a.dims[0], a.dims[1], a.dims[2], a.dims[3]};
}

void check_spatial(const char* name, const Extents& e) {
  if (e.h < 1 || e.w < 1) {
    fail_argument(name, "spatial extents of at least 1", std::to_string(e.h) + " x " + std::to_string(e.w));
  }
}

// The per-output tables of one axis, and the PoolAxis viewing them.
struct AxisTable {
  std::vector<int64_t> first, skip, taps;
  std::vector<float> count;
  PoolAxis axis;

  void resize(int64_t out) {
    first.assign(out, 0);
    skip.assign(out, 0);
    taps.assign(out, 0);
    count.assign(out, 0.0f);
  }
  void point() {
    axis.first = first.data();
    axis.skip = skip.data();
    axis.taps = taps.data();
    axis.count = count.data();
  }
};

struct WindowArgs {
  int64_t kernel, stride, before, after, dilation;
};

// floor(a / b) for b > 0.
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The output extent of a regular pooling axis (PyTorch's formula; with
// ceil_mode the last window must start inside the input or the padding
// before it), every relation checked. `axis` is "H" or "W".
int64_t regular_out(const char* axis, int64_t in, const WindowArgs& a, bool ceil_mode) {
  const std::string suffix = std::string(" along ") + axis;
  const int64_t span = a.dilation * (a.kernel - 1) + 1;
  if (a.before > span - 1 || a.after > span - 1) {
    fail_argument("padding", "pads of at most dilation * (kernel - 1) = " + std::to_string(span - 1) + suffix,
         std::to_string(a.before) + " and " + std::to_string(a.after));
  }
  const int64_t room = in + a.before + a.after - span;
  if (room < 0) {
    fail_argument("kernel_size", "a dilated kernel extent of at most the padded input (" +
                            std::to_string(in + a.before + a.after) + ")" + suffix, std::to_string(span));
  }
  int64_t out = (ceil_mode ? (room + a.stride - 1) / a.stride : room / a.stride) + 1;
  if (ceil_mode && (out - 1) * a.stride >= in + a.before) --out;
  return out;
}

void regular_axis(AxisTable& t, int64_t in, const WindowArgs& a, int64_t out, bool include_pad) {
  t.resize(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * a.stride - a.before;
    const int64_t j0 = start >= 0 ? 0 : (-start + a.dilation - 1) / a.dilation;
    int64_t j1 = floor_div(in - 1 - start, a.dilation);  // last tap inside the input
    if (j1 > a.kernel - 1) j1 = a.kernel - 1;
    const int64_t taps = j1 >= j0 ? j1 - j0 + 1 : 0;
    t.taps[o] = taps;
    t.skip[o] = taps > 0 ? j0 : 0;
    t.first[o] = taps > 0 ? start + j0 * a.dilation : 0;
    int64_t counted = taps;
    if (include_pad) {  // taps inside [-before, in + after): start >= -before always
      int64_t last = floor_div(in + a.after - 1 - start, a.dilation);
      if (last > a.kernel - 1) last = a.kernel - 1;
      counted = last >= 0 ? last + 1 : 0;
    }
    t.count[o] = static_cast<float>(counted);
  }
  PoolAxis& ax = t.axis;
  ax.in = in;
  ax.out = out;
  ax.kernel = a.kernel;
  ax.stride = a.stride;
  ax.dilation = a.dilation;
  ax.pad = a.before;
  ax.regular = true;
  // Outputs whose every tap is in range: start >= 0 and start + (k - 1) d <= in - 1.
  int64_t lo = (a.before + a.stride - 1) / a.stride;
  int64_t hi = floor_div(in - 1 + a.before - (a.kernel - 1) * a.dilation, a.stride) + 1;
  if (hi > out) hi = out;
  if (lo > hi) lo = hi;
  if (hi < 0) lo = hi = 0;
  ax.full_lo = lo;
  ax.full_hi = hi;
  t.point();
}

// Adaptive windows [floor(o * in / out), ceil((o + 1) * in / out)).
void adaptive_axis(AxisTable& t, int64_t in, int64_t out) {
  t.resize(out);
  int64_t widest = 1;
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * in / out;
    const int64_t end = ((o + 1) * in + out - 1) / out;
    t.first[o] = start;
    t.taps[o] = end - start;
    t.count[o] = static_cast<float>(end - start);
    if (end - start > widest) widest = end - start;
  }
  PoolAxis& ax = t.axis;
  ax.in = in;
  ax.out = out;
  ax.kernel = widest;
  ax.regular = false;
  t.point();
}

struct Geometry {
  AxisTable h, w;
  PoolGeometry g;
  Extents x;  // the input's
  void point() {
    g.planes = x.n * x.c;
    g.h = h.axis;
    g.w = w.axis;
  }
  int64_t work() const { return g.planes * (g.h.in * g.w.in + g.h.out * g.w.out); }
};

struct PoolArgs {
  int64_t kh, kw, sh, sw, pt, pb, pl, pr, dh, dw;
  bool ceil_mode;
};

void check_pool_args(const PoolArgs& a, int nd) {
  check_param("kernel_h", a.kh, 1);
  check_param("kernel_w", a.kw, 1);
  check_param("stride_h", a.sh, 1);
  check_param("stride_w", a.sw, 1);
  check_param("dilation_h", a.dh, 1);
  check_param("dilation_w", a.dw, 1);
  check_param("pad_top", a.pt, 0);
  check_param("pad_bottom", a.pb, 0);
  check_param("pad_left", a.pl, 0);
  check_param("pad_right", a.pr, 0);
  if (nd == 3 && (a.kh != 1 || a.sh != 1 || a.dh != 1 || a.pt != 0 || a.pb != 0)) {
    fail_argument("kernel_h, stride_h, dilation_h, pad_top, pad_bottom", "1, 1, 1, 0, 0 for 3-D (1-D pooling) arrays",
         std::to_string(a.kh) + ", " + std::to_string(a.sh) + ", " + std::to_string(a.dh) + ", " +
             std::to_string(a.pt) + ", " + std::to_string(a.pb));
  }
}

// The regular geometry of pooling an input of extents `x`.
void regular_geometry(Geometry& geo, const Extents& x, const PoolArgs& a, bool include_pad) {
  check_pool_args(a, x.nd);
  geo.x = x;
  const WindowArgs ha{a.kh, a.sh, a.pt, a.pb, a.dh}, wa{a.kw, a.sw, a.pl, a.pr, a.dw};
  const int64_t oh = regular_out("H", x.h, ha, a.ceil_mode);
  const int64_t ow = regular_out("W", x.w, wa, a.ceil_mode);
  regular_axis(geo.h, x.h, ha, oh, include_pad);
  regular_axis(geo.w, x.w, wa, ow, include_pad);
  geo.point();
}

// Max pooling refuses windows that lie wholly in padding (only dilation
// can make one): their maximum would be -inf.
void check_windows_meet_input(const Geometry& geo) {
  for (const AxisTable* t : {&geo.h, &geo.w}) {
    for (int64_t o = 0; o < t->axis.out; ++o) {
      if (t->taps[o] == 0) {
        fail_argument("padding", "every max-pooling window to meet the input",
             std::string("window ") + std::to_string(o) + " along " + (t == &geo.h ? "H" : "W") +
                 " wholly in padding (its dilated taps skip over the input)");
      }
    }
  }
}

py::object new_output(int nd, int64_t n, int64_t c, int64_t h, int64_t w) {
  const Py_intptr_t dims4[4] = {static_cast<Py_intptr_t>(n), static_cast<Py_intptr_t>(c),
                                static_cast<Py_intptr_t>(h), static_cast<Py_intptr_t>(w)};
  const Py_intptr_t dims3[3] = {dims4[0], dims4[1], dims4[3]};
  return nd == 3 ? new_float_array(3, dims3) : new_float_array(4, dims4);
}

py::object new_indices(int nd, int64_t n, int64_t c, int64_t h, int64_t w) {
  std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(c)};
  if (nd == 4) shape.push_back(static_cast<py::ssize_t>(h));
  shape.push_back(static_cast<py::ssize_t>(w));
  return py::array_t<int64_t>(shape);
}

int64_t* index_data(const py::object& a) {
  return reinterpret_cast<int64_t*>(py::detail::array_proxy(a.ptr())->data);
}

// A ValueError unless `a` has the extents (rank `nd`) want.
template <class T>
void check_extents(const char* name, const ArrayArg<T>& a, int nd, const Extents& want, const char* what) {
  const Extents got = extents_of(name, a);
  if (a.nd != nd || got.n != want.n || got.c != want.c || got.h != want.h || got.w != want.w) {
    std::string expected = "shape (" + std::to_string(want.n) + ", " + std::to_string(want.c) + ", ";
    if (nd == 4) expected += std::to_string(want.h) + ", ";
    fail_argument(name, expected + std::to_string(want.w) + ") (" + what + ")", shape_string(a));
  }
}

Extents output_extents(const Geometry& geo) { return {geo.x.nd, geo.x.n, geo.x.c, geo.g.h.out, geo.g.w.out}; }

// input_shape of a backward: (N, C, H, W), or (N, C, L) with h == -1.
Extents shape_arg(int64_t n, int64_t c, int64_t h, int64_t w) {
  check_param("input_shape[0]", n, 0);
  check_param("input_shape[1]", c, 0);
  if (h != -1) check_param("input_shape[2]", h, 1);
  check_param("input_shape[-1]", w, 1);
  return h == -1 ? Extents{3, n, c, 1, w} : Extents{4, n, c, h, w};
}

[[noreturn]] void index_error(const char* name, int64_t plane) {
  throw py::index_error(std::string(name) + ": expected flat positions in [0, " + std::to_string(plane - 1) +
                        "] of each plane, got one outside");
}

// --------------------------------------------------------------- entries

py::object max_pool2d(py::handle x_arg, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                      int64_t pl, int64_t pr, int64_t dh, int64_t dw, bool ceil_mode, bool return_indices) {
  FloatArg x;
  if (!float_arg(x_arg, &x)) return py::none();
  const Extents xe = extents_of("x", x);
  check_spatial("x", xe);
  Geometry geo;
  regular_geometry(geo, xe, PoolArgs{kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, ceil_mode}, false);
  check_windows_meet_input(geo);
  py::object y = new_output(xe.nd, xe.n, xe.c, geo.g.h.out, geo.g.w.out);
  py::object idx = return_indices ? new_indices(xe.nd, xe.n, xe.c, geo.g.h.out, geo.g.w.out) : py::none();
  float* yp = float_data(y);
  int64_t* ip = return_indices ? index_data(idx) : nullptr;
  run_kernel(geo.work(), [&] { cpu::pooling_kernels().max_forward(geo.g, x.data, yp, ip); });
  if (return_indices) return py::make_tuple(y, idx);
  return y;
}

py::object avg_pool2d(py::handle x_arg, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                      int64_t pl, int64_t pr, int64_t dh, int64_t dw, bool ceil_mode, bool count_include_pad,
                      int64_t divisor_override) {
  FloatArg x;
  if (!float_arg(x_arg, &x)) return py::none();
  const Extents xe = extents_of("x", x);
  check_spatial("x", xe);
  check_param("divisor_override", divisor_override, 0);  // 0: none
  Geometry geo;
  regular_geometry(geo, xe, PoolArgs{kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, ceil_mode}, count_include_pad);
  py::object y = new_output(xe.nd, xe.n, xe.c, geo.g.h.out, geo.g.w.out);
  float* yp = float_data(y);
  const float divisor = static_cast<float>(divisor_override);
  run_kernel(geo.work(), [&] { cpu::pooling_kernels().avg_forward(geo.g, x.data, yp, divisor); });
  return y;
}

py::object avg_pool2d_backward(py::handle grad_y_arg, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr,
                               int64_t dh, int64_t dw, bool ceil_mode, bool count_include_pad,
                               int64_t divisor_override) {
  FloatArg grad_y;
  if (!float_arg(grad_y_arg, &grad_y)) return py::none();
  const Extents xe = shape_arg(n, c, h, w);
  check_param("divisor_override", divisor_override, 0);
  Geometry geo;
  regular_geometry(geo, xe, PoolArgs{kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, ceil_mode}, count_include_pad);
  check_extents("grad_y", grad_y, xe.nd, output_extents(geo), "the forward's output");
  py::object grad_x = new_output(xe.nd, xe.n, xe.c, xe.h, xe.w);
  float* gx = float_data(grad_x);
  const float divisor = static_cast<float>(divisor_override);
  run_kernel(geo.work(), [&] { cpu::pooling_kernels().avg_backward(geo.g, grad_y.data, gx, divisor); });
  return grad_x;
}

// Adaptive pooling: mode 0 average, 1 max, 2 max with indices.
py::object adaptive_pool2d(py::handle x_arg, int64_t out_h, int64_t out_w, int64_t mode) {
  FloatArg x;
  if (!float_arg(x_arg, &x)) return py::none();
  const Extents xe = extents_of("x", x);
  check_spatial("x", xe);
  check_param("output_size[0]", out_h, 1);
  check_param("output_size[1]", out_w, 1);
  if (mode < 0 || mode > 2) fail_argument("mode", "0, 1 or 2", std::to_string(mode));
  if (xe.nd == 3 && out_h != 1) fail_argument("output_size[0]", "1 for 3-D arrays", std::to_string(out_h));
  Geometry geo;
  geo.x = xe;
  adaptive_axis(geo.h, xe.h, out_h);
  adaptive_axis(geo.w, xe.w, out_w);
  geo.point();
  py::object y = new_output(xe.nd, xe.n, xe.c, out_h, out_w);
  py::object idx = mode == 2 ? new_indices(xe.nd, xe.n, xe.c, out_h, out_w) : py::none();
  float* yp = float_data(y);
  int64_t* ip = mode == 2 ? index_data(idx) : nullptr;
  run_kernel(geo.work(), [&] {
    if (mode == 0) {
      cpu::pooling_kernels().avg_forward(geo.g, x.data, yp, 0.0f);
    } else {
      cpu::pooling_kernels().max_forward(geo.g, x.data, yp, ip);
    }
  });
  if (mode == 2) return py::make_tuple(y, idx);
  return y;
}

py::object adaptive_avg_pool2d_backward(py::handle grad_y_arg, int64_t n, int64_t c, int64_t h, int64_t w) {
  FloatArg grad_y;
  if (!float_arg(grad_y_arg, &grad_y)) return py::none();
  const Extents xe = shape_arg(n, c, h, w);
  const Extents ge = extents_of("grad_y", grad_y);
  if (grad_y.nd != xe.nd || ge.n != xe.n || ge.c != xe.c || ge.h < 1 || ge.w < 1) {
    fail_argument("grad_y", "shape (" + std::to_string(xe.n) + ", " + std::to_string(xe.c) + ", ...) of rank " +
                       std::to_string(xe.nd) + " with output extents >= 1", shape_string(grad_y));
  }
  Geometry geo;
  geo.x = xe;
  adaptive_axis(geo.h, xe.h, ge.h);
  adaptive_axis(geo.w, xe.w, ge.w);
  geo.point();
  py::object grad_x = new_output(xe.nd, xe.n, xe.c, xe.h, xe.w);
  float* gx = float_data(grad_x);
  run_kernel(geo.work(), [&] { cpu::pooling_kernels().avg_backward(geo.g, grad_y.data, gx, 0.0f); });
  return grad_x;
}

// The backward of max_pool2d and adaptive_max_pool2d.
py::object max_pool2d_backward(py::handle grad_y_arg, py::handle indices_arg, int64_t n, int64_t c, int64_t h,
                               int64_t w) {
  FloatArg grad_y;
  IndexArg indices;
  if (!float_arg(grad_y_arg, &grad_y) || !index_arg(indices_arg, &indices)) return py::none();
  const Extents xe = shape_arg(n, c, h, w);
  const Extents ge = extents_of("grad_y", grad_y);
  if (grad_y.nd != xe.nd || ge.n != xe.n || ge.c != xe.c) {
    fail_argument("grad_y", "shape (" + std::to_string(xe.n) + ", " + std::to_string(xe.c) + ", ...) of rank " +
                       std::to_string(xe.nd), shape_string(grad_y));
  }
  if (!indices.shape_equals(grad_y)) fail_argument("indices", "the shape of grad_y " + shape_string(grad_y), shape_string(indices));
  py::object grad_x = new_output(xe.nd, xe.n, xe.c, xe.h, xe.w);
  float* gx = float_data(grad_x);
  const int64_t planes = xe.n * xe.c, in_plane = xe.h * xe.w, out_plane = ge.h * ge.w;
  bool ok = true;
  run_kernel(planes * (in_plane + out_plane), [&] {
    ok = cpu::pooling_kernels().max_backward(planes, in_plane, out_plane, grad_y.data, indices.data, gx);
  });
  if (!ok) index_error("indices", in_plane);
  return grad_x;
}

py::object max_unpool2d(py::handle x_arg, py::handle indices_arg, int64_t out_h, int64_t out_w) {
  FloatArg x;
  IndexArg indices;
  if (!float_arg(x_arg, &x) || !index_arg(indices_arg, &indices)) return py::none();
  const Extents xe = extents_of("x", x);
  if (!indices.shape_equals(x)) fail_argument("indices", "the shape of x " + shape_string(x), shape_string(indices));
  check_param("output_size[0]", out_h, 1);
  check_param("output_size[1]", out_w, 1);
  if (xe.nd == 3 && out_h != 1) fail_argument("output_size[0]", "1 for 3-D arrays", std::to_string(out_h));
  int64_t out_plane = 0, total = 0;
  if (__builtin_mul_overflow(out_h, out_w, &out_plane) || __builtin_mul_overflow(out_plane, xe.n * xe.c, &total) ||
      total > (int64_t{1} << 60)) {
    fail_argument("output_size", "an output that fits in memory", std::to_string(out_h) + " x " + std::to_string(out_w));
  }
  py::object y = new_output(xe.nd, xe.n, xe.c, out_h, out_w);
  float* yp = float_data(y);
  const int64_t planes = xe.n * xe.c, x_plane = xe.h * xe.w;
  bool ok = true;
  run_kernel(planes * (x_plane + out_plane), [&] {
    ok = cpu::pooling_kernels().max_unpool(planes, x_plane, out_plane, x.data, indices.data, yp);
  });
  if (!ok) index_error("indices", out_plane);
  return y;
}

}  // namespace

void bind_pooling(py::module_& m) {
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("pt"), py::arg("pb"), py::arg("pl"), py::arg("pr"), py::arg("dh"), py::arg("dw"),
        py::arg("ceil_mode"), py::arg("return_indices"));
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("pt"), py::arg("pb"), py::arg("pl"), py::arg("pr"), py::arg("dh"), py::arg("dw"),
        py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_y"), py::arg("n"), py::arg("c"), py::arg("h"),
        py::arg("w"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("pt"), py::arg("pb"),
        py::arg("pl"), py::arg("pr"), py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("adaptive_pool2d", &adaptive_pool2d, py::arg("x"), py::arg("out_h"), py::arg("out_w"), py::arg("mode"));
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_y"), py::arg("n"),
        py::arg("c"), py::arg("h"), py::arg("w"));
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_y"), py::arg("indices"), py::arg("n"),
        py::arg("c"), py::arg("h"), py::arg("w"));
  m.def("max_unpool2d", &max_unpool2d, py::arg("x"), py::arg("indices"), py::arg("out_h"), py::arg("out_w"));
}

}  // namespace minidnn::bindings
