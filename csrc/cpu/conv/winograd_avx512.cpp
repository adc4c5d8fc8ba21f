// Winograd transforms, avx512 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx512.h"
#include "cpu/conv/winograd_impl.h"

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms_avx512() {
  static const WinogradTransforms table = make_winograd_transforms<Avx512Ops>();
  return table;
}

}  // namespace minidnn::cpu
