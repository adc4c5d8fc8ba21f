// GEMM, avx512 variant: compiled with this ISA's flags only.
#include "cpu/gemm/gemm_impl.h"
#include "cpu/simd/avx2.h"
#include "cpu/simd/avx512.h"

namespace {

// Eight-float vectors, for tiles of at most 8 columns: Zen 4 runs a
// 512-bit FMA as two 256-bit halves, so such a tile costs half as much in
// 256-bit vectors as in masked 512-bit ones (DCGAN's transposed convolution
// at batch 1: a 4-column tile after six of 32 on each of its 147 row
// panels). Tails by AVX-512VL masks rather than AVX2's masked moves.
struct Avx512HalfOps : Avx2Ops {
  static __mmask8 tail_mask(int64_t n) { return static_cast<__mmask8>((1u << n) - 1u); }
  static V load_tail(const float* p, int64_t n, float fill) {
    return _mm256_mask_loadu_ps(_mm256_set1_ps(fill), tail_mask(n), p);
  }
  static void store_tail(float* p, V v, int64_t n) { _mm256_mask_storeu_ps(p, tail_mask(n), v); }
};

// The half-width kernel of a tile whose A panels have kPanelRows rows.
template <int kPanelRows>
struct Avx512HalfTail {
  using Ops = Avx512HalfOps;
  static constexpr int kMR = kPanelRows, kNV = 1;
};

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
  using HalfTail = Avx512HalfTail<kMR>;
  static constexpr int64_t kKC = 384, kNC = 640, kMC = 2016;
  // x @ W^T: dot products (4 x 4 zmm accumulators) up to 8 rows, the
  // weight-rows route from 9 to 128 rows (faster than the dot products from
  // 10 rows, than packing W up to 128 and about even at 256; bench/NOTES.md).
  static constexpr int kDotRows = 4, kDotCols = 4;
  static constexpr int64_t kDotMaxM = 8;
  static constexpr int64_t kWeightRowsMaxM = 128;
  // B read in place while one A panel covers M (each B row is then read
  // once: packing can only add traffic); measured slower than packing from
  // two panels on (bench/NOTES.md).
  static constexpr int64_t kInPlaceMaxM = kMR;

  // dst[c * ldd + r] = src[r * ld + c] for a 16 x 16 block: unpack pairs of
  // rows, then pairs of pairs, then exchange 128-bit lanes twice.
  static void transpose_tile(const float* src, int64_t ld, float* dst, int64_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
      const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
      r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
      r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
      r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
      r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int h = 0; h < 16; h += 8) {
      for (int q = 0; q < 4; ++q) {
        t[h + q] = _mm512_shuffle_f32x4(r[h + q], r[h + 4 + q], 0x88);
        t[h + 4 + q] = _mm512_shuffle_f32x4(r[h + q], r[h + 4 + q], 0xdd);
      }
    }
    for (int q = 0; q < 8; ++q) {
      _mm512_storeu_ps(dst + q * ldd, _mm512_shuffle_f32x4(t[q], t[8 + q], 0x88));
      _mm512_storeu_ps(dst + (8 + q) * ldd, _mm512_shuffle_f32x4(t[q], t[8 + q], 0xdd));
    }
  }
};

// The wide tile of ukernel_a_rows_wide, 9 x 48: 27 accumulators + 3 for the
// B row + 1 broadcast = 31 registers; per k step 3 loads and 9 broadcasts
// feed 27 FMAs (the 14 x 16 tile's 1 load and 14 broadcasts per 14 FMAs,
// and the spilled row offsets' reloads, leave it load-bound).
struct Avx512WideRows : Avx512Gemm {
  static constexpr int kMR = 9, kNV = 3;
  using HalfTail = Avx512HalfTail<kMR>;
};

}  // namespace

namespace minidnn::cpu {

const GemmKernels& gemm_kernels_avx512() {
  static const GemmKernels table = make_gemm_kernels<Avx512Gemm, Avx512WideRows>();
  return table;
}

}  // namespace minidnn::cpu
