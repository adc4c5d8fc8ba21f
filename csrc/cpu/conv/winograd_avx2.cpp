// Winograd transforms, avx2 variant: compiled with this ISA's flags only.
#include "cpu/simd/avx2.h"
#include "cpu/conv/winograd_impl.h"

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms_avx2() {
  static const WinogradTransforms table = make_winograd_transforms<Avx2Ops>();
  return table;
}

}  // namespace minidnn::cpu
