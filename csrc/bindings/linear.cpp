// _C entries of linear (forward and backward) on the project's SGEMM, each
// returning its result or None for arguments the Python layer must validate
// first (see common.h); and a direct, private entry to the GEMM itself
// (transposes, alpha / beta, leading dimensions, packed B) for the tests.
#include <algorithm>
#include <array>
#include <climits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "cpu/gemm/gemm.h"

namespace minidnn::bindings {
namespace {

using cpu::GemmEpilogue;
using cpu::GemmOperand;

// The product of three extents, saturating: the work measure of a GEMM for
// run_kernel.
int64_t gemm_work(int64_t m, int64_t n, int64_t k) {
  int64_t mn = 0, mnk = 0;
  if (__builtin_mul_overflow(m, n, &mn) || __builtin_mul_overflow(mn, k, &mnk)) return INT64_MAX;
  return mnk;
}

// x (..., in_features), weight (out_features, in_features) and bias
// (out_features,) or None, as linear's kernels read them, or false.
struct LinearArgs {
  FloatArg x, weight;
  std::optional<FloatArg> bias;
  int64_t rows = 0, in_features = 0, out_features = 0;
};

bool parse_linear(py::handle x_arg, py::handle weight_arg, LinearArgs* a) {
  if (!float_arg(x_arg, &a->x) || !float_arg(weight_arg, &a->weight)) return false;
  if (a->weight.nd != 2 || a->x.nd == 0 || a->x.dims[a->x.nd - 1] != a->weight.dims[1]) return false;
  a->out_features = a->weight.dims[0];
  a->in_features = a->weight.dims[1];
  a->rows = 1;
  for (int i = 0; i + 1 < a->x.nd; ++i) a->rows *= a->x.dims[i];
  return true;
}

// x's shape with the last extent replaced.
std::array<Py_intptr_t, kMaxDims> with_last(const FloatArg& x, int64_t last) {
  std::array<Py_intptr_t, kMaxDims> dims{};
  std::copy(x.dims, x.dims + x.nd, dims.begin());
  dims[x.nd - 1] = last;
  return dims;
}

py::object linear(py::handle x_arg, py::handle weight_arg, py::handle bias_arg) {
  LinearArgs a;
  if (!parse_linear(x_arg, weight_arg, &a) || !optional_float_arg(bias_arg, &a.bias)) return py::none();
  if (a.bias && (a.bias->nd != 1 || a.bias->dims[0] != a.out_features)) return py::none();
  py::object y = new_float_array(a.x.nd, with_last(a.x, a.out_features).data());
  float* yp = float_data(y);
  GemmEpilogue ep;
  ep.bias = a.bias ? a.bias->data : nullptr;
  // y = x @ W^T + bias: A = x (rows x in), B = W^T (W stored out x in). An
  // empty extent is never indexed; ld >= 1 keeps the address math sane.
  const int64_t ld = a.in_features > 0 ? a.in_features : 1;
  run_kernel(gemm_work(a.rows, a.out_features, a.in_features), [&] {
    cpu::gemm_kernels().gemm(a.rows, a.out_features, a.in_features, 1.0f, GemmOperand{a.x.data, ld, false},
                             GemmOperand{a.weight.data, ld, true}, 0.0f, yp, a.out_features > 0 ? a.out_features : 1,
                             ep);
  });
  return y;
}

py::object linear_backward(py::handle grad_y_arg, py::handle x_arg, py::handle weight_arg) {
  LinearArgs a;
  FloatArg grad_y;
  if (!parse_linear(x_arg, weight_arg, &a) || !float_arg(grad_y_arg, &grad_y) ||
      !grad_y.shape_is(a.x.nd, with_last(a.x, a.out_features).data())) {
    return py::none();
  }
  const int64_t rows = a.rows, in = a.in_features, out = a.out_features;
  py::object grad_x = new_float_array(a.x.nd, a.x.dims);
  py::object grad_weight = new_float_array(2, a.weight.dims);
  const Py_intptr_t bias_dims[1] = {static_cast<Py_intptr_t>(out)};
  py::object grad_bias = new_float_array(1, bias_dims);
  float* gxp = float_data(grad_x);
  float* gwp = float_data(grad_weight);
  float* gbp = float_data(grad_bias);
  // grad_bias = ones(1 x rows) @ grad_y: the GEMM's in-place route sums the
  // rows in a fixed order, vectorized across the outputs.
  std::vector<float> ones(static_cast<size_t>(rows > 0 ? rows : 1), 1.0f);
  const int64_t ld_in = in > 0 ? in : 1, ld_out = out > 0 ? out : 1, ld_rows = rows > 0 ? rows : 1;
  run_kernel(gemm_work(rows, out, in), [&] {
    const cpu::GemmKernels& k = cpu::gemm_kernels();
    const GemmEpilogue none;
    // grad_x = grad_y @ W.
    k.gemm(rows, in, out, 1.0f, GemmOperand{grad_y.data, ld_out, false}, GemmOperand{a.weight.data, ld_in, false},
           0.0f, gxp, ld_in, none);
    // grad_W = grad_y^T @ x.
    k.gemm(out, in, rows, 1.0f, GemmOperand{grad_y.data, ld_out, true}, GemmOperand{a.x.data, ld_in, false}, 0.0f,
           gwp, ld_in, none);
    k.gemm(1, out, rows, 1.0f, GemmOperand{ones.data(), ld_rows, false}, GemmOperand{grad_y.data, ld_out, false},
           0.0f, gbp, ld_out, none);
  });
  return py::make_tuple(grad_x, grad_weight, grad_bias);
}

// The private GEMM entry of the tests: a 2-D float32 array's storage as an
// operand holding op(X) of m x n, with leading dimension its second extent.
GemmOperand operand(py::handle h, const char* name, int64_t m, int64_t n, bool trans) {
  FloatArg a;
  if (!float_arg(h, &a) || a.nd != 2) {
    throw std::invalid_argument(std::string(name) + ": expected a 2-D C-contiguous float32 array");
  }
  const int64_t rows = a.dims[0], cols = a.dims[1];
  const int64_t need_rows = trans ? n : m, need_cols = trans ? m : n;
  if (rows < need_rows || cols < need_cols) {
    throw std::invalid_argument(std::string(name) + ": expected storage of at least " + std::to_string(need_rows) +
                                " x " + std::to_string(need_cols) + ", got " + std::to_string(rows) + " x " +
                                std::to_string(cols));
  }
  return GemmOperand{a.data, cols > 0 ? cols : 1, trans};
}

// C[:m, :n] = alpha * op(A) @ op(B) + beta * C (+ bias), in place on c.
// With `pack_b`, B is first packed (pack_b) and the product runs on the
// packed panels (gemm_packed_b), as a caller reusing weights would.
void gemm(py::handle a, py::handle b, py::handle c, int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b,
          float alpha, float beta, py::handle bias_arg, bool pack_b) {
  if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("gemm: negative extent");
  const GemmOperand ga = operand(a, "a", m, k, trans_a);
  const GemmOperand gb = operand(b, "b", k, n, trans_b);
  const GemmOperand gc = operand(c, "c", m, n, false);
  if ((py::detail::array_proxy(c.ptr())->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) == 0) {
    throw std::invalid_argument("c: output array is read-only");
  }
  std::optional<FloatArg> bias;
  if (!optional_float_arg(bias_arg, &bias) || (bias && bias->size != n)) {
    throw std::invalid_argument("bias: expected None or " + std::to_string(n) + " float32 values");
  }
  GemmEpilogue ep;
  ep.bias = bias ? bias->data : nullptr;
  float* cp = const_cast<float*>(gc.data);
  const cpu::GemmKernels& kern = cpu::gemm_kernels();
  if (!pack_b) {
    py::gil_scoped_release nogil;
    kern.gemm(m, n, k, alpha, ga, gb, beta, cp, gc.ld, ep);
    return;
  }
  std::vector<float> packed(static_cast<size_t>(cpu::packed_b_floats(kern.blocking, k, n)));
  py::gil_scoped_release nogil;
  kern.pack_b(k, n, gb, packed.data());
  kern.gemm_packed_b(m, n, k, alpha, ga, packed.data(), beta, cp, gc.ld, ep);
}

py::dict gemm_blocking() {
  const cpu::GemmBlocking& b = cpu::gemm_kernels().blocking;
  py::dict d;
  d["mr"] = b.mr;
  d["nr"] = b.nr;
  d["kc"] = b.kc;
  d["nc"] = b.nc;
  d["mc"] = b.mc;
  return d;
}

}  // namespace

void bind_linear(py::module_& m) {
  m.def("linear", &linear, py::arg("x"), py::arg("weight"), py::arg("bias"));
  m.def("linear_backward", &linear_backward, py::arg("grad_y"), py::arg("x"), py::arg("weight"));
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("m"), py::arg("n"),
        py::arg("k"), py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("beta"), py::arg("bias"),
        py::arg("pack_b"));
  m.def("gemm_blocking", &gemm_blocking);
}

}  // namespace minidnn::bindings
