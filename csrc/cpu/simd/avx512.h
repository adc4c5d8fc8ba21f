// AVX-512 (F/BW/VL/DQ) vocabulary, 16 lanes; see README.md for the contract.
#pragma once

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512DQ__)
#error "simd/avx512.h belongs only to translation units compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq"
#endif

#include <immintrin.h>

#include <cstdint>

namespace {

struct Avx512Ops {
  static constexpr int W = 16;
  static constexpr bool kOneOpScale = true;  // scale_pow2 is one instruction (see README.md)
  using V = __m512;
  using M = __mmask16;

  static V set1(float a) { return _mm512_set1_ps(a); }
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V in_register(V v) {
    asm("" : "+v"(v));
    return v;
  }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V load_tail(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p);
  }
  static void store_tail(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }
  static void stream(float* p, V v) { _mm512_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }

  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static V copysign(V magnitude, V sign) {
    // One bitwise select, mask ? sign : magnitude (truth table 0xAC).
    const __m512i mask = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    return _mm512_castsi512_ps(
        _mm512_ternarylogic_epi32(mask, _mm512_castps_si512(magnitude), _mm512_castps_si512(sign), 0xAC));
  }

  static M gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static bool any(M m) { return m != 0; }
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }

  static float reduce_max(V a) { return _mm512_reduce_max_ps(a); }
  static float reduce_add(V a) { return _mm512_reduce_add_ps(a); }

  static V pow2_from_biased(V t) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23)); }

  // p[0], p[stride], ..., p[(W - 1) * stride] (reads nothing else).
  static V load_stride2(const float* p) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_maskz_loadu_ps(0x7fff, p + 16));
  }
  // even[l] = p[2l], odd[l] = p[2l + 1] of p[0, 2W); the _part form reads
  // only p[0, n) (0 < n < 2W) and puts `fill` in place of the rest.
  static void deinterleave(const float* p, V* even, V* odd) {
    split_pairs(_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16), even, odd);
  }
  static void deinterleave_part(const float* p, int64_t n, float fill, V* even, V* odd) {
    const V f = _mm512_set1_ps(fill);
    const V a = n >= 16 ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(f, tail_mask(n), p);
    const V b = n > 16 ? _mm512_mask_loadu_ps(f, tail_mask(n - 16), p + 16) : f;
    split_pairs(a, b, even, odd);
  }
  // p[2l] = even[l], p[2l + 1] = odd[l] for p[0, 2W): deinterleave's inverse;
  // the _part form writes only p[0, n) (0 < n < 2W).
  static void interleave(V even, V odd, float* p) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(even, lo, odd));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(even, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), odd));
  }
  static void interleave_part(V even, V odd, int64_t n, float* p) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    _mm512_mask_storeu_ps(p, tail_mask(n >= 16 ? 16 : n), _mm512_permutex2var_ps(even, lo, odd));
    if (n > 16) {
      _mm512_mask_storeu_ps(p + 16, tail_mask(n - 16),
                            _mm512_permutex2var_ps(even, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), odd));
    }
  }
  // [prev[W - 1], cur[0], ..., cur[W - 2]] and [cur[1], ..., cur[W - 1], next[0]].
  static V shift_in(V prev, V cur) {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(cur), _mm512_castps_si512(prev), 15));
  }
  static V shift_next(V cur, V next) {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(next), _mm512_castps_si512(cur), 1));
  }
  static V gather(const float* p, int64_t stride) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_i32gather_ps(_mm512_mullo_epi32(iota, _mm512_set1_epi32(static_cast<int>(stride))), p, 4);
  }
  // Lanes [lo, hi) (0 <= lo <= hi <= W) of the loads above, `fill`
  // elsewhere; only the elements those lanes read are touched.
  static __mmask16 lane_mask(int64_t lo, int64_t hi) {
    return static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
  }
  static V load_lanes(const float* p, int64_t lo, int64_t hi, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), lane_mask(lo, hi), p);
  }
  static V load_stride2_lanes(const float* p, int64_t lo, int64_t hi, float fill) {
    if (hi <= lo) return _mm512_set1_ps(fill);
    // Elements 2 lo .. 2 (hi - 1) of p[0, 32).
    const uint64_t elements = ((uint64_t{1} << (2 * hi - 1)) - 1u) & ~((uint64_t{1} << (2 * lo)) - 1u);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const V v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(static_cast<__mmask16>(elements), p), even,
                                       _mm512_maskz_loadu_ps(static_cast<__mmask16>(elements >> 16), p + 16));
    return _mm512_mask_blend_ps(lane_mask(lo, hi), _mm512_set1_ps(fill), v);
  }
  static V gather_lanes(const float* p, int64_t stride, int64_t lo, int64_t hi, float fill) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mask_i32gather_ps(_mm512_set1_ps(fill), lane_mask(lo, hi),
                                    _mm512_mullo_epi32(iota, _mm512_set1_epi32(static_cast<int>(stride))), p, 4);
  }
  // a > b or a is NaN: where max pooling replaces its running maximum b.
  static M gt_or_nan(V a, V b) {
    return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) | _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
  }
  static M scan_replaces(V v, V vr, V m, V r) {
    const __mmask16 v_nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    const __mmask16 m_number = _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q);
    const __mmask16 nan_wins = v_nan & (m_number | _mm512_cmp_ps_mask(vr, r, _CMP_GE_OQ));
    const __mmask16 tie_wins = _mm512_cmp_ps_mask(v, m, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(vr, r, _CMP_LT_OQ);
    return static_cast<__mmask16>(nan_wins | tie_wins | _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ));
  }
  static V permute(V table, const int32_t* lanes) { return _mm512_permutexvar_ps(_mm512_loadu_si512(lanes), table); }

  static V scale_pow2(V p, V n) {
    // vscalefps computes p * 2^floor(n) in one step, overflow and gradual
    // underflow included.
    return _mm512_scalef_ps(p, n);
  }

  // even[l] and odd[l]: elements 2l and 2l + 1 of the 2W elements a then b.
  static void split_pairs(V a, V b, V* even, V* odd) {
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *even = _mm512_permutex2var_ps(a, evens, b);
    *odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(evens, _mm512_set1_epi32(1)), b);
  }
};

}  // namespace
