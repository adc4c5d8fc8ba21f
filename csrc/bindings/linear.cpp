// _C bindings of linear (forward and backward) on the project's SGEMM, and
// a direct entry to the GEMM itself (transposes, alpha / beta, leading
// dimensions, packed B) for tests and for Python-level users of the C++ API.
// Arrays arrive validated and contiguous from python/minidnn/linear.py;
// every kernel runs without the GIL.
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

// A 2-D array's extents, checked against what the caller needs.
struct Matrix2d {
  int64_t rows, cols;
};

Matrix2d matrix(const Array<float>& a, const char* name) {
  if (a.ndim() != 2) {
    throw std::invalid_argument(std::string(name) + ": expected a 2-D array, got " + std::to_string(a.ndim()) + "-D");
  }
  return Matrix2d{static_cast<int64_t>(a.shape(0)), static_cast<int64_t>(a.shape(1))};
}

// The array holds op(X) of m x n with leading dimension cols: its storage
// must cover rows x cols with rows >= (trans ? n : m), cols >= (trans ? m : n).
GemmOperand operand(const Array<float>& a, const char* name, int64_t m, int64_t n, bool trans) {
  const Matrix2d s = matrix(a, name);
  const int64_t need_rows = trans ? n : m, need_cols = trans ? m : n;
  if (s.rows < need_rows || s.cols < need_cols) {
    throw std::invalid_argument(std::string(name) + ": expected storage of at least " + std::to_string(need_rows) +
                                " x " + std::to_string(need_cols) + ", got " + std::to_string(s.rows) + " x " +
                                std::to_string(s.cols));
  }
  // An empty extent is never indexed; ld >= 1 keeps the address math sane.
  return GemmOperand{a.data(), s.cols > 0 ? s.cols : 1, trans};
}

void linear_forward(const Array<float>& x, const Array<float>& weight, const std::optional<Array<float>>& bias,
                    Array<float>& y, int64_t rows, int64_t in_features, int64_t out_features) {
  checked_product(rows, in_features, 1);
  checked_product(rows, out_features, 1);
  checked_product(out_features, in_features, 1);
  const float* xp = input(x, rows * in_features, "x");
  const float* wp = input(weight, out_features * in_features, "weight");
  GemmEpilogue ep;
  ep.bias = optional_input(bias, out_features, "bias");
  float* yp = output(y, rows * out_features, "out");
  py::gil_scoped_release nogil;
  // y = x @ W^T + bias: A = x (rows x in), B = W^T (W stored out x in).
  cpu::gemm_kernels().gemm(rows, out_features, in_features, 1.0f, GemmOperand{xp, in_features, false},
                           GemmOperand{wp, in_features, true}, 0.0f, yp, out_features, ep);
}

void linear_backward(const Array<float>& grad_y, const Array<float>& x, const Array<float>& weight,
                     Array<float>& grad_x, Array<float>& grad_weight, Array<float>& grad_bias, int64_t rows,
                     int64_t in_features, int64_t out_features) {
  checked_product(rows, in_features, 1);
  checked_product(rows, out_features, 1);
  checked_product(out_features, in_features, 1);
  const float* gyp = input(grad_y, rows * out_features, "grad_y");
  const float* xp = input(x, rows * in_features, "x");
  const float* wp = input(weight, out_features * in_features, "weight");
  float* gxp = output(grad_x, rows * in_features, "grad_x");
  float* gwp = output(grad_weight, out_features * in_features, "grad_weight");
  float* gbp = output(grad_bias, out_features, "grad_bias");
  // grad_bias = ones(1 x rows) @ grad_y: the GEMM's in-place route sums the
  // rows in a fixed order, vectorized across the outputs.
  std::vector<float> ones(static_cast<size_t>(rows > 0 ? rows : 1), 1.0f);
  py::gil_scoped_release nogil;
  const cpu::GemmKernels& k = cpu::gemm_kernels();
  const GemmEpilogue none;
  // grad_x = grad_y @ W.
  k.gemm(rows, in_features, out_features, 1.0f, GemmOperand{gyp, out_features, false},
         GemmOperand{wp, in_features, false}, 0.0f, gxp, in_features, none);
  // grad_W = grad_y^T @ x.
  k.gemm(out_features, in_features, rows, 1.0f, GemmOperand{gyp, out_features, true},
         GemmOperand{xp, in_features, false}, 0.0f, gwp, in_features, none);
  k.gemm(1, out_features, rows, 1.0f, GemmOperand{ones.data(), rows, false}, GemmOperand{gyp, out_features, false},
         0.0f, gbp, out_features, none);
}

// C[:m, :n] = alpha * op(A) @ op(B) + beta * C (+ bias), on the storage of
// the given arrays (leading dimension = their second extent). With
// `pack_b`, B is first packed (pack_b) and the product runs on the packed
// panels (gemm_packed_b), as a caller reusing weights would.
void gemm(const Array<float>& a, const Array<float>& b, Array<float>& c, int64_t m, int64_t n, int64_t k,
          bool trans_a, bool trans_b, float alpha, float beta, const std::optional<Array<float>>& bias, bool pack_b) {
  if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("gemm: negative extent");
  const GemmOperand ga = operand(a, "a", m, k, trans_a);
  const GemmOperand gb = operand(b, "b", k, n, trans_b);
  const GemmOperand gc = operand(c, "c", m, n, false);
  if (!c.writeable()) throw std::invalid_argument("c: output array is read-only");
  GemmEpilogue ep;
  ep.bias = bias ? input(*bias, n, "bias") : nullptr;
  float* cp = c.mutable_data();
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
  m.def("linear_forward", &linear_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out").noconvert(),
        py::arg("rows"), py::arg("in_features"), py::arg("out_features"));
  m.def("linear_backward", &linear_backward, py::arg("grad_y"), py::arg("x"), py::arg("weight"),
        py::arg("grad_x").noconvert(), py::arg("grad_weight").noconvert(), py::arg("grad_bias").noconvert(),
        py::arg("rows"), py::arg("in_features"), py::arg("out_features"));
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c").noconvert(), py::arg("m"), py::arg("n"),
        py::arg("k"), py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("beta"), py::arg("bias"),
        py::arg("pack_b"));
  m.def("gemm_blocking", &gemm_blocking);
}

}  // namespace minidnn::bindings
