// GEMM, avx2 variant: compiled with this ISA's flags only.
#include "cpu/gemm/gemm_impl.h"
#include "cpu/simd/avx2.h"

namespace {

// Tile 6 x 16: 12 ymm accumulators + 2 for the B row + 1 broadcast = 15 of
// the 16 registers; per k step 2 loads and 6 broadcasts feed 12 FMAs.
// Blocking for AMD Zen 4 (32 KB L1d, 1 MB L2 per core), also fine on
// Intel cores with larger caches:
//   KC = 256: the A panel (6 x 256 x 4 B = 6 KB) stays in L1 with room for
//             the B rows streaming past it;
//   NC = 512: the B block (256 x 512 x 4 B = 512 KB) half of L2;
//   MC = 1536: the A block (1.5 MB) sits in L3 (4 MB per core on Zen 4).
struct Avx2Gemm {
  using Ops = Avx2Ops;
  static constexpr int kMR = 6, kNV = 2;
  static constexpr int64_t kKC = 256, kNC = 512, kMC = 1536;
  static constexpr int kDotRows = 4, kDotCols = 4;
  static constexpr int64_t kDotMaxM = 32;
  static constexpr int64_t kInPlaceMaxM = 12;
};

}  // namespace

namespace minidnn::cpu {

const GemmKernels& gemm_kernels_avx2() {
  static const GemmKernels table = make_gemm_kernels<Avx2Gemm>();
  return table;
}

}  // namespace minidnn::cpu
