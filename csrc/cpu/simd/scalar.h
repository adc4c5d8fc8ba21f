// Portable one-lane vocabulary; see README.md for the contract.
#pragma once

#include <cstdint>
#include <cstring>

namespace {

struct ScalarOps {
  static constexpr int W = 1;
  static constexpr bool kOneOpScale = false;  // scale_pow2 is one instruction (see README.md)
  using V = float;
  using M = bool;

  static V set1(float a) { return a; }
  static V zero() { return 0.0f; }
  static V load(const float* p) { return *p; }
  static V in_register(V v) {
    asm("" : "+x"(v));
    return v;
  }
  static void store(float* p, V v) { *p = v; }
  static V load_tail(const float* p, int64_t n, float fill) { return n > 0 ? *p : fill; }
  static void store_tail(float* p, V v, int64_t n) {
    if (n > 0) *p = v;
  }
  static void stream(float* p, V v) { *p = v; }
  static void stream_fence() {}

  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V fnmadd(V a, V b, V c) { return c - a * b; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V min(V a, V b) { return a < b ? a : b; }
  static V abs(V a) { return bits_to_float(float_to_bits(a) & 0x7fffffffu); }
  static V copysign(V magnitude, V sign) {
    return bits_to_float((float_to_bits(magnitude) & 0x7fffffffu) |
                         (float_to_bits(sign) & 0x80000000u));
  }

  static M gt(V a, V b) { return a > b; }
  static M lt(V a, V b) { return a < b; }
  static M le(V a, V b) { return a <= b; }
  static bool any(M m) { return m; }
  static V select(M m, V a, V b) { return m ? a : b; }

  static float reduce_max(V a) { return a; }
  static float reduce_add(V a) { return a; }

  static V pow2_from_biased(V t) {
    return bits_to_float(float_to_bits(t) << 23);
  }

  // p[0], p[stride], ..., p[(W - 1) * stride] (reads nothing else).
  static V load_stride2(const float* p) { return *p; }
  static V gather(const float* p, int64_t) { return *p; }
  // even[l] and odd[l]: elements 2l and 2l + 1 of the 2W elements a then b.
  static void split_pairs(V a, V b, V* even, V* odd) {
    *even = a;
    *odd = b;
  }
  // even[l] = p[2l], odd[l] = p[2l + 1] of p[0, 2W); the _part form reads
  // only p[0, n) (0 < n < 2W) and puts `fill` in place of the rest.
  static void deinterleave(const float* p, V* even, V* odd) {
    *even = p[0];
    *odd = p[1];
  }
  static void deinterleave_part(const float* p, int64_t, float fill, V* even, V* odd) {
    *even = p[0];
    *odd = fill;
  }
  // p[2l] = even[l], p[2l + 1] = odd[l] for p[0, 2W): deinterleave's inverse;
  // the _part form writes only p[0, n) (0 < n < 2W).
  static void interleave(V even, V odd, float* p) {
    p[0] = even;
    p[1] = odd;
  }
  static void interleave_part(V even, V odd, int64_t n, float* p) {
    p[0] = even;
    if (n > 1) p[1] = odd;
  }
  // [prev[W - 1], cur[0], ..., cur[W - 2]] and [cur[1], ..., cur[W - 1], next[0]].
  static V shift_in(V prev, V) { return prev; }
  static V shift_next(V, V next) { return next; }
  // Lanes [lo, hi) (0 <= lo <= hi <= W) of the loads above, `fill`
  // elsewhere; only the elements those lanes read are touched.
  static V load_lanes(const float* p, int64_t lo, int64_t hi, float fill) { return lo < hi ? *p : fill; }
  static V load_stride2_lanes(const float* p, int64_t lo, int64_t hi, float fill) { return lo < hi ? *p : fill; }
  static V gather_lanes(const float* p, int64_t, int64_t lo, int64_t hi, float fill) { return lo < hi ? *p : fill; }
  // a > b or a is NaN: where max pooling replaces its running maximum b.
  static M gt_or_nan(V a, V b) { return a > b || a != a; }
  static M scan_replaces(V v, V vr, V m, V r) { return v != v ? (m == m || vr >= r) : (v > m || (v == m && vr < r)); }
  static V permute(V table, const int32_t*) { return table; }  // one lane: lanes[0] is 0

  static V scale_pow2(V p, V n) {
    if (n != n) return n;
    const int32_t ni = static_cast<int32_t>(n);
    const int32_t n1 = ni >> 1;
    const int32_t n2 = ni - n1;
    return p * bits_to_float(static_cast<uint32_t>(n1 + 127) << 23) *
           bits_to_float(static_cast<uint32_t>(n2 + 127) << 23);
  }

 private:
  static uint32_t float_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
  }
  static float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
};

}  // namespace
