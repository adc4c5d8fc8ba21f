// Integer helpers the convolution drivers share when they cut work into
// blocks and pick a thread count. Baseline-compiled drivers only: nothing
// here may be included by an ISA-flagged file (simd/README.md).
#pragma once

#include <climits>
#include <cstdint>
#include <initializer_list>

namespace minidnn::cpu {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The product of non-negative extents, saturating at INT64_MAX.
inline int64_t saturating_product(std::initializer_list<int64_t> extents) {
  int64_t product = 1;
  for (int64_t e : extents) {
    if (__builtin_mul_overflow(product, e, &product)) return INT64_MAX;
  }
  return product;
}

// FMAs worth waking a thread for (as the GEMM's grain).
constexpr int64_t kConvGrain = int64_t{1} << 18;

// Of a microkernel GEMM's `ncols` columns (B's SIMD direction), the last
// ncols % lanes when there are at most lanes / 4 of them (1..4 of 16 on
// avx512, 1..2 of 8 on avx2, none on the portable path), which the
// drivers compute as dot products along K (GemmKernels::dot) instead: the
// microkernel's tile spends a whole vector FMA per row and K step on them
// (49 positions on avx512: 4 vectors for 49 lanes, the last holding 1;
// 196: 13 or 14 for 196, the last holding 4), the dots 1 / lanes of one
// per column plus a lane sum per row, column and call.
inline int64_t dot_tail_columns(int lanes, int64_t ncols) {
  const int64_t tail = ncols % lanes;
  return tail <= lanes / 4 ? tail : 0;
}

}  // namespace minidnn::cpu
