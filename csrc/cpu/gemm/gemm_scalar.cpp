// GEMM, portable variant (baseline x86-64: the compiler may vectorize the
// 4 x 8 tile's rows with SSE2, 2 xmm per row).
#include "cpu/gemm/gemm_impl.h"
#include "cpu/simd/scalar.h"

namespace {

// Tile 4 x 8 of scalar accumulators (8 xmm once vectorized, of 16).
// Blocking sized for a 32 KB L1 and 256 KB L2, the smallest still common:
// A panel 4 x 256 x 4 B = 4 KB, B block 256 x 128 x 4 B = 128 KB.
struct ScalarGemm {
  using Ops = ScalarOps;
  static constexpr int kMR = 4, kNV = 8;
  static constexpr int64_t kKC = 256, kNC = 128, kMC = 512;
  static constexpr int kDotRows = 2, kDotCols = 4;
  static constexpr int64_t kDotMaxM = 8;
  // No weight-rows route: its 4 x 8 tile with A in place ran 4x slower
  // than packing W (bench/NOTES.md).
  static constexpr int64_t kWeightRowsMaxM = 0;
  // B read in place while one A panel covers M (each B row is then read
  // once: packing can only add traffic); measured slower than packing from
  // two panels on (bench/NOTES.md).
  static constexpr int64_t kInPlaceMaxM = kMR;

  // A 1 x 1 block: the scalar path transposes element by element.
  static void transpose_tile(const float* src, int64_t, float* dst, int64_t) { *dst = *src; }
};

}  // namespace

namespace minidnn::cpu {

const GemmKernels& gemm_kernels_scalar() {
  static const GemmKernels table = make_gemm_kernels<ScalarGemm>();
  return table;
}

}  // namespace minidnn::cpu
