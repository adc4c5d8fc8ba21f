// Depthwise convolution, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/conv/depthwise_impl.h"

namespace {

struct DepthwiseAvx2Ops : Avx2Ops {
  // Lanes i < n (n <= 8) from p[2 i], other lanes 0: two masked loads
  // (nothing past p[2 n - 2] is read), then the even elements of each
  // 128-bit half and a swap of the middle 64-bit pairs.
  static V load_even(const float* p, int64_t n) {
    const int64_t count = 2 * n - 1;
    const __m256 lo = count >= W ? load(p) : load_tail(p, count, 0.0f);
    const __m256 hi = count > W ? load_tail(p + W, count - W, 0.0f) : _mm256_setzero_ps();
    const __m256 evens = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));  // lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(evens), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};

}  // namespace

namespace minidnn::cpu {

const DepthwiseKernels& depthwise_kernels_avx2() {
  static const DepthwiseKernels table{depthwise_forward<DepthwiseAvx2Ops>};
  return table;
}

}  // namespace minidnn::cpu
