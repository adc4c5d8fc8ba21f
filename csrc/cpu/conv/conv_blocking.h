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

}  // namespace minidnn::cpu
