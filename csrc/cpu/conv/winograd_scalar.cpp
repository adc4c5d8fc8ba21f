// Winograd transforms, scalar variant: compiled with this ISA's flags only.
#include "cpu/simd/scalar.h"
#include "cpu/conv/winograd_impl.h"

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms_scalar() {
  static const WinogradTransforms table = make_winograd_transforms<ScalarOps>();
  return table;
}

}  // namespace minidnn::cpu
