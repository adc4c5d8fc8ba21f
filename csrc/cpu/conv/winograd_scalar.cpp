// Winograd transforms, scalar variant.
#include "cpu/simd/scalar.h"
#include "cpu/conv/winograd_impl.h"

namespace {

struct WinogradScalarOps : ScalarOps {
  using Offsets = int32_t;
  static Offsets offsets_of(const int32_t* offsets, int) { return offsets[0]; }
  static V gather_at(const float* p, Offsets offset, int) { return p[offset]; }
};

}  // namespace

namespace minidnn::cpu {

const WinogradTransforms& winograd_transforms_scalar() {
  static const WinogradTransforms table = make_winograd_transforms<WinogradScalarOps>();
  return table;
}

}  // namespace minidnn::cpu
