// Winograd transforms, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/conv/winograd_impl.h"

namespace {

struct WinogradAvx512Ops : Avx512Ops {
  using Offsets = __m512i;
  static Offsets offsets_of(const int32_t* offsets, int lanes) {
    return _mm512_maskz_loadu_epi32(tail_mask(lanes), offsets);
  }
  static V gather_at(const float* p, Offsets idx, int lanes) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), tail_mask(lanes), idx, p, 4);
  }
};

}  // namespace

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms_avx512() {
  static const WinogradTransforms table = make_winograd_transforms<WinogradAvx512Ops>();
  return table;
}

}  // namespace minidnn::cpu
