// AVX2 + FMA vocabulary, 8 lanes; see README.md for the contract.
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__)
#error "simd/avx2.h belongs only to translation units compiled with -mavx2 -mfma"
#endif

#include <immintrin.h>

#include <cstdint>

namespace {

struct Avx2Ops {
  static constexpr int W = 8;
  static constexpr bool kOneOpScale = false;  // scale_pow2 is one instruction (see README.md)
  using V = __m256;
  using M = __m256;

  static V set1(float a) { return _mm256_set1_ps(a); }
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V in_register(V v) {
    asm("" : "+x"(v));
    return v;
  }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_tail(const float* p, int64_t n, float fill) {
    const __m256i m = tail_mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_tail(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
  static void stream(float* p, V v) { _mm256_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }

  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static V copysign(V magnitude, V sign) {
    const V s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, magnitude), _mm256_and_ps(s, sign));
  }

  static M gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }

  static float reduce_max(V a) {
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
  }
  static float reduce_add(V a) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
  }

  static V pow2_from_biased(V t) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23)); }

  // p[0], p[stride], ..., p[(W - 1) * stride] (reads nothing else).
  static V load_stride2(const float* p) {
    const V lo = _mm256_loadu_ps(p);
    const V hi = load_tail(p + 8, 7, 0.0f);
    // [0 2 8 10 | 4 6 12 14] -> 64-bit chunks 0 2 1 3.
    const V mixed = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // even[l] = p[2l], odd[l] = p[2l + 1] of p[0, 2W); the _part form reads
  // only p[0, n) (0 < n < 2W) and puts `fill` in place of the rest.
  static void deinterleave(const float* p, V* even, V* odd) {
    split_pairs(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), even, odd);
  }
  static void deinterleave_part(const float* p, int64_t n, float fill, V* even, V* odd) {
    const V a = n >= 8 ? _mm256_loadu_ps(p) : load_tail(p, n, fill);
    const V b = n > 8 ? load_tail(p + 8, n - 8, fill) : _mm256_set1_ps(fill);
    split_pairs(a, b, even, odd);
  }
  // p[2l] = even[l], p[2l + 1] = odd[l] for p[0, 2W): deinterleave's inverse;
  // the _part form writes only p[0, n) (0 < n < 2W).
  static void interleave(V even, V odd, float* p) {
    // Pairs [0 1 | 4 5] and [2 3 | 6 7], then their 128-bit halves in order.
    const V lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  static void interleave_part(V even, V odd, int64_t n, float* p) {
    const V lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
    const V first = _mm256_permute2f128_ps(lo, hi, 0x20);
    if (n >= 8) {
      _mm256_storeu_ps(p, first);
    } else {
      store_tail(p, first, n);
    }
    if (n > 8) store_tail(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31), n - 8);
  }
  // [prev[W - 1], cur[0], ..., cur[W - 2]] and [cur[1], ..., cur[W - 1], next[0]]:
  // the 128-bit halves that meet, then a byte shift within each half.
  static V shift_in(V prev, V cur) {
    const __m256i meet = _mm256_castps_si256(_mm256_permute2f128_ps(prev, cur, 0x21));  // [prev hi, cur lo]
    return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(cur), meet, 12));
  }
  static V shift_next(V cur, V next) {
    const __m256i meet = _mm256_castps_si256(_mm256_permute2f128_ps(cur, next, 0x21));  // [cur hi, next lo]
    return _mm256_castsi256_ps(_mm256_alignr_epi8(meet, _mm256_castps_si256(cur), 4));
  }
  static V gather(const float* p, int64_t stride) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_i32gather_ps(p, _mm256_mullo_epi32(iota, _mm256_set1_epi32(static_cast<int>(stride))), 4);
  }
  // Lanes [lo, hi) (0 <= lo <= hi <= W) of the loads above, `fill`
  // elsewhere; only the elements those lanes read are touched.
  static __m256i range_mask(int64_t lo, int64_t hi, int first) {  // elements first + i in [lo, hi)
    const __m256i e = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(first));
    return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), e),
                            _mm256_cmpgt_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(1)),
                                               _mm256_set1_epi32(static_cast<int>(lo))));
  }
  static V load_lanes(const float* p, int64_t lo, int64_t hi, float fill) {
    const __m256i m = range_mask(lo, hi, 0);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static V load_stride2_lanes(const float* p, int64_t lo, int64_t hi, float fill) {
    if (hi <= lo) return _mm256_set1_ps(fill);
    const V a = _mm256_maskload_ps(p, range_mask(2 * lo, 2 * hi - 1, 0));
    const V b = _mm256_maskload_ps(p + 8, range_mask(2 * lo, 2 * hi - 1, 8));
    const V mixed = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const V v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mixed), _MM_SHUFFLE(3, 1, 2, 0)));
    return _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(range_mask(lo, hi, 0)));
  }
  static V gather_lanes(const float* p, int64_t stride, int64_t lo, int64_t hi, float fill) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_mask_i32gather_ps(_mm256_set1_ps(fill), p,
                                    _mm256_mullo_epi32(iota, _mm256_set1_epi32(static_cast<int>(stride))),
                                    _mm256_castsi256_ps(range_mask(lo, hi, 0)), 4);
  }
  // a > b or a is NaN: where max pooling replaces its running maximum b.
  static M gt_or_nan(V a, V b) { return _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ), _mm256_cmp_ps(a, a, _CMP_UNORD_Q)); }
  static M scan_replaces(V v, V vr, V m, V r) {
    const V nan_wins = _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q),
                                     _mm256_or_ps(_mm256_cmp_ps(m, m, _CMP_ORD_Q), _mm256_cmp_ps(vr, r, _CMP_GE_OQ)));
    const V tie_wins = _mm256_and_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ), _mm256_cmp_ps(vr, r, _CMP_LT_OQ));
    return _mm256_or_ps(_mm256_or_ps(nan_wins, tie_wins), _mm256_cmp_ps(v, m, _CMP_GT_OQ));
  }
  static V permute(V table, const int32_t* lanes) {
    return _mm256_permutevar8x32_ps(table, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes)));
  }

  static V scale_pow2(V p, V n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  }

  // even[l] and odd[l]: elements 2l and 2l + 1 of the 2W elements a then b.
  static void split_pairs(V a, V b, V* even, V* odd) {
    // [0 2 8 10 | 4 6 12 14] -> 64-bit chunks 0 2 1 3; the same for the odd.
    const V evens = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const V odds = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(evens), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odds), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};

}  // namespace
