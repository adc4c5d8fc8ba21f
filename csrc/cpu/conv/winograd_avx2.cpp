// Winograd transforms, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/conv/winograd_impl.h"

namespace {

struct WinogradAvx2Ops : Avx2Ops {
  using Offsets = __m256i;
  static __m256i lane_mask(int lanes) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Offsets offsets_of(const int32_t* offsets, int lanes) {
    return _mm256_maskload_epi32(offsets, lane_mask(lanes));
  }
  static V gather_at(const float* p, Offsets idx, int lanes) {
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(lane_mask(lanes)), 4);
  }
};

}  // namespace

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms_avx2() {
  static const WinogradTransforms table = make_winograd_transforms<WinogradAvx2Ops>();
  return table;
}

}  // namespace minidnn::cpu
