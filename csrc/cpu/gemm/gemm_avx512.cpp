// GEMM, avx512 variant: compiled with this ISA's flags only.
#include "cpu/gemm/gemm_impl.h"
#include "cpu/simd/avx512.h"

namespace {

// Tile 14 x 32: 28 zmm accumulators + 2 for the B row + 1 broadcast = 31 of
// the 32 registers; per k step 2 loads and 14 broadcasts feed 28 FMAs, so
// the two FMA ports, not the loads, set the pace.
// Blocking for Sapphire Rapids (48 KB L1d, 2 MB L2 per core):
//   KC = 384: the A panel (14 x 384 x 4 B = 21 KB) holds half of L1;
//   NC = 640: the B block (384 x 640 x 4 B = 960 KB) half of L2;
//   MC = 2016: the A block (3 MB) sits in L3 and bounds how often B is repacked.
struct Avx512Gemm {
  using Ops = Avx512Ops;
  static constexpr int kMR = 14, kNV = 2;
  static constexpr int64_t kKC = 384, kNC = 640, kMC = 2016;
  // Dot-product route for x @ W^T with M <= 32: 4 x 4 zmm accumulators.
  static constexpr int kDotRows = 4, kDotCols = 4;
  static constexpr int64_t kDotMaxM = 32;
  // B read in place (no packing) while one or two A panels cover M.
  static constexpr int64_t kInPlaceMaxM = 28;
};

}  // namespace

namespace minidnn::cpu {

const GemmKernels& gemm_kernels_avx512() {
  static const GemmKernels table = make_gemm_kernels<Avx512Gemm>();
  return table;
}

}  // namespace minidnn::cpu
