// Row kernels of the convolution drivers that are not GEMMs: the col2im
// scatter of backward data and the depthwise passes, vectorized per ISA
// (conv_rows_<isa>.cpp) and picked at run time like the GEMM's table.
#pragma once

#include <cstdint>

namespace minidnn::cpu {

// A piece of a row of an im2col panel (conv_forward.cpp's packing): lanes
// e in [lo, hi) of dst[dst + e] take src[src + stride * e] (stride 1 or 2,
// the convolution's), the other lanes of [0, len) zero; 0 <= lo <= hi <=
// len <= the table's `lanes`. Lanes outside [lo, hi) read nothing (their
// elements may lie outside the input).
struct ConvCopyRun {
  int64_t src;
  int64_t dst;
  int32_t lo, hi, len;
};

// All work on `rows` rows of `n` contiguous floats, each operand with its
// own row stride (a window of a plane, or consecutive output rows of an
// im2col tile), so that one call covers a tap's whole window.
struct ConvRowKernels {
  int lanes;  // floats per SIMD vector
  // dst[i * ldd + j] += alpha * src[i * lds + j].
  void (*axpy)(float* dst, int64_t ldd, const float* src, int64_t lds, float alpha, int64_t rows, int64_t n);
  // The sum over i, j of a[i * lda + j] * b[i * ldb + j], in an order fixed
  // by rows and n alone.
  float (*dot)(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t rows, int64_t n);
  // The sum over i, j of a[i * lda + j], likewise.
  float (*sum)(const float* a, int64_t lda, int64_t rows, int64_t n);
  // Each of the n runs, from `src` (elements `stride` apart: 1 or 2) into
  // `dst`: one masked load and one masked store per run, where a loop per
  // run with its edges cut off and zeroed cost ~15 cycles (a tenth of a 3x3
  // 7x7 512->512 layer at N = 1; a fifth of a 3x3/2 28x28 256 one at N = 8).
  void (*copy_runs)(const float* src, int64_t stride, const ConvCopyRun* runs, int64_t n, float* dst);
  // dst[i * ldd + 2 j] += src[i * lds + j] for j < n: col2im's scatter
  // with column stride 2 (a scalar loop there was 28% of a 3x3/2 layer's
  // backward data). Reads and rewrites unchanged the odd elements between,
  // dst[i * ldd + 2 j + 1] for j < n - 1, and touches nothing else.
  void (*add_stride2)(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t n);
  // dst[i * ldd + j] = src[i * lds + 2 j] for j < n, reading nothing else:
  // im2col's gather with column stride 2 (backward weight; one float at a
  // time it was 7% of conv_transpose2d 4x4/2's forward and backward).
  void (*copy_stride2)(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t n);
};

const ConvRowKernels& conv_row_kernels_scalar();
const ConvRowKernels& conv_row_kernels_avx2();
const ConvRowKernels& conv_row_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const ConvRowKernels& conv_row_kernels();

}  // namespace minidnn::cpu
