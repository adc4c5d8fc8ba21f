// Row kernels of the convolution drivers that are not GEMMs: the col2im
// scatter of backward data and the depthwise passes, vectorized per ISA
// (conv_rows_<isa>.cpp) and picked at run time like the GEMM's table.
#pragma once

#include <cstdint>

namespace minidnn::cpu {

// All work on `rows` rows of `n` contiguous floats, each operand with its
// own row stride (a window of a plane, or consecutive output rows of an
// im2col tile), so that one call covers a tap's whole window.
struct ConvRowKernels {
  // dst[i * ldd + j] += alpha * src[i * lds + j].
  void (*axpy)(float* dst, int64_t ldd, const float* src, int64_t lds, float alpha, int64_t rows, int64_t n);
  // The sum over i, j of a[i * lda + j] * b[i * ldb + j], in an order fixed
  // by rows and n alone.
  float (*dot)(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t rows, int64_t n);
  // The sum over i, j of a[i * lda + j], likewise.
  float (*sum)(const float* a, int64_t lda, int64_t rows, int64_t n);
};

const ConvRowKernels& conv_row_kernels_scalar();
const ConvRowKernels& conv_row_kernels_avx2();
const ConvRowKernels& conv_row_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const ConvRowKernels& conv_row_kernels();

}  // namespace minidnn::cpu
