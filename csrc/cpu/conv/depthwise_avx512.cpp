// Depthwise convolution, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/conv/depthwise_impl.h"

namespace {

struct DepthwiseAvx512Ops : Avx512Ops {
  // Lanes i < n (n <= 16) from p[2 i], other lanes 0: two masked loads
  // (nothing past p[2 n - 2] is read) and one two-source permute.
  static V load_even(const float* p, int64_t n) {
    const int64_t count = 2 * n - 1;
    const __m512 lo = _mm512_maskz_loadu_ps(tail_mask(count < W ? count : W), p);
    const __m512 hi = count > W ? _mm512_maskz_loadu_ps(tail_mask(count - W), p + W) : _mm512_setzero_ps();
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, even, hi);
  }
};

}  // namespace

namespace minidnn::cpu {

const DepthwiseKernels& depthwise_kernels_avx512() {
  static const DepthwiseKernels table{depthwise_forward<DepthwiseAvx512Ops>};
  return table;
}

}  // namespace minidnn::cpu
