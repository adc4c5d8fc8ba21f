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
  // x @ W^T: dot products up to 6 rows, the weight-rows route from 7 to
  // 128 (faster than the dot products from 8 rows, than packing W up to
  // 128 and about even at 256; bench/NOTES.md).
  static constexpr int kDotRows = 4, kDotCols = 4;
  static constexpr int64_t kDotMaxM = 6;
  static constexpr int64_t kWeightRowsMaxM = 128;
  // B read in place while one A panel covers M (each B row is then read
  // once: packing can only add traffic); measured slower than packing from
  // two panels on (bench/NOTES.md).
  static constexpr int64_t kInPlaceMaxM = kMR;

  // dst[c * ldd + r] = src[r * ld + c] for an 8 x 8 block: unpack pairs of
  // rows, shuffle pairs of pairs, then exchange 128-bit halves.
  static void transpose_tile(const float* src, int64_t ld, float* dst, int64_t ldd) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; ++q) {
      _mm256_storeu_ps(dst + q * ldd, _mm256_permute2f128_ps(r[q], r[4 + q], 0x20));
      _mm256_storeu_ps(dst + (4 + q) * ldd, _mm256_permute2f128_ps(r[q], r[4 + q], 0x31));
    }
  }
};

}  // namespace

namespace minidnn::cpu {

const GemmKernels& gemm_kernels_avx2() {
  static const GemmKernels table = make_gemm_kernels<Avx2Gemm>();
  return table;
}

}  // namespace minidnn::cpu
