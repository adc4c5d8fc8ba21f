// Transcendental functions written once over a SIMD vocabulary (Ops is one
// of ScalarOps, Avx2Ops, Avx512Ops). See README.md for why this is in an
// anonymous namespace.
#pragma once

namespace {

// r = x - n ln2, with ln2 split in two parts so that n ln2_hi is exact
// (Cody and Waite): |r| <= ln2 / 2 when n = round(x / ln2).
template <class Ops>
typename Ops::V reduce_ln2(typename Ops::V x, typename Ops::V n) {
  const typename Ops::V r = Ops::fnmadd(n, Ops::set1(0.693359375f), x);
  return Ops::fnmadd(n, Ops::set1(-2.12194440e-4f), r);
}

// e^r for |r| <= ln2 / 2 by a polynomial of degree kDegree (5 or 6), by
// Horner's rule: kDegree fused multiply-adds. Coefficients fitted here for
// minimax relative error on that interval with c0 = 1 (Lawson's iteration,
// bench/NOTES.md): degree 5 errs by 9.2e-8, degree 6 by 2.0e-9; the whole
// exp, float32 rounding included, is then within 2.0 and 1.04 ulp.
template <class Ops, int kDegree>
typename Ops::V exp_polynomial(typename Ops::V r) {
  static_assert(kDegree == 5 || kDegree == 6, "exp_polynomial: degree 5 or 6");
  using V = typename Ops::V;
  V p;
  if constexpr (kDegree == 5) {
    p = Ops::fmadd(Ops::set1(8.2902517170e-3f), r, Ops::set1(4.1898112744e-2f));
    p = Ops::fmadd(p, r, Ops::set1(1.6667638719e-1f));
    p = Ops::fmadd(p, r, Ops::set1(4.9999147654e-1f));
    p = Ops::fmadd(p, r, Ops::set1(9.9999970198e-1f));
  } else {
    p = Ops::fmadd(Ops::set1(1.3843582710e-3f), r, Ops::set1(8.3741899580e-3f));
    p = Ops::fmadd(p, r, Ops::set1(4.1668005288e-2f));
    p = Ops::fmadd(p, r, Ops::set1(1.6666430235e-1f));
    p = Ops::fmadd(p, r, Ops::set1(4.9999994040e-1f));
    p = Ops::fmadd(p, r, Ops::set1(1.0f));
  }
  return Ops::fmadd(p, r, Ops::set1(1.0f));
}

// exp(x), within 1.1 ulp over the whole float range (degree-6 polynomial).
//
// Range reduction x = n ln2 + r (n rounded by adding and subtracting
// 1.5 * 2^23: two operations, where a round instruction is two micro-ops
// after the multiply), then e^r * 2^n. The clamp keeps n in
// [-150, 129]: past 88.72 the scaling overflows to +inf, below -103.97 it
// underflows to 0, and in between the gradual-underflow results are
// rounded once. max(lo, x) keeps a NaN x (the vocabulary's NaN rule), so
// NaN propagates.
template <class Ops>
typename Ops::V vexp(typename Ops::V x) {
  using V = typename Ops::V;
  const V magic = Ops::set1(12582912.0f);
  x = Ops::min(Ops::set1(89.0f), Ops::max(Ops::set1(-104.0f), x));
  const V n = Ops::sub(Ops::fmadd(x, Ops::set1(1.44269504088896341f), magic), magic);
  return Ops::scale_pow2(exp_polynomial<Ops, 6>(reduce_ln2<Ops>(x, n)), n);
}

// exp(z) for z <= 88.7, the arguments of softmax and cross-entropy
// (z = x - max(x)) and of sigmoid: rounding to an integer by adding
// 1.5 * 2^23, whose low bits then hold the biased exponent of 2^n
// (pow2_from_biased), and no special cases: clamping z at -88 makes n =
// -127, whose 2^n reads as +0, so z <= -87.68 (including -inf) gives
// exactly 0 and results between 2^-127 and the smallest normal float round
// through the final multiply. kDegree 5 (2.0 ulp) serves softmax, whose
// outputs are checked to about 1e-6 relative; 6 (1.04 ulp) sigmoid's
// few-ulp bound. 12 vector operations at degree 5, against 16 for the
// previous form (degree 7 and a select for the flush).
//
// AVX-512's vscalefps would build 2^n and scale in one operation instead of
// two, but it underflows to 0 for -inf lanes (SIMD tails, masked logits)
// through a microcode assist: softmax 128x1000 took 21% longer with it,
// while 512x128 (no tails) took 15% less (bench/NOTES.md).
template <class Ops, int kDegree = 5>
typename Ops::V vexp_nonpositive(typename Ops::V z) {
  using V = typename Ops::V;
  const V magic = Ops::set1(12582912.0f + 127.0f);
  z = Ops::max(Ops::set1(-88.0f), z);
  const V biased = Ops::fmadd(z, Ops::set1(1.44269504088896341f), magic);
  const V n = Ops::sub(biased, magic);
  return Ops::mul(exp_polynomial<Ops, kDegree>(reduce_ln2<Ops>(z, n)), Ops::pow2_from_biased(biased));
}

// sigmoid(x) = 1 / (1 + e^-x), evaluated as s = 1 / (1 + e^-|x|) and
// e^-|x| * s for negative x: never overflows, and keeps full relative
// accuracy deep into the negative tail. With a one-instruction scale_pow2
// the full-range exp is the cheaper one (its underflow assists hit only
// |x| > 87); otherwise vectors with a lane below -87 (a subnormal result)
// take it and the rest the faster vexp_nonpositive.
// The division stays: the divider works beside the FMA ports, which bound
// this code; a reciprocal estimate with Newton steps measured the same on
// AVX-512 and 10-25% slower on AVX2 (bench/NOTES.md).
template <class Ops>
typename Ops::V vsigmoid(typename Ops::V x) {
  using V = typename Ops::V;
  const V na = Ops::sub(Ops::zero(), Ops::abs(x));
  const bool full_range = Ops::kOneOpScale || Ops::any(Ops::lt(na, Ops::set1(-87.0f)));
  const V e = full_range ? vexp<Ops>(na) : vexp_nonpositive<Ops, 6>(na);
  const V s = Ops::div(Ops::set1(1.0f), Ops::add(Ops::set1(1.0f), e));
  return Ops::select(Ops::lt(x, Ops::zero()), Ops::mul(e, s), s);
}

// tanh(x) = -m / (2 + m) with m = expm1(-2|x|), and the sign of x. No
// branches and no cancellation near 0: expm1(t) = 2^n expm1(r) + (2^n - 1)
// after the reduction t = n ln2 + r, with expm1(r) = r + r^2 Q(r), Q of
// degree 4 fitted here for minimax relative error (1.3e-8). Clamping t at
// -88 makes 2^n read as +0, so m = -1 and the result 1 for large |x|; a
// NaN flows through. 2.5 ulp worst over a dense sweep (bench/NOTES.md),
// in about 20 vector operations where the former series-or-exp select took
// about 30.
template <class Ops>
typename Ops::V vtanh(typename Ops::V x) {
  using V = typename Ops::V;
  const V magic = Ops::set1(12582912.0f + 127.0f);
  const V one = Ops::set1(1.0f);
  const V t = Ops::max(Ops::set1(-88.0f), Ops::mul(Ops::abs(x), Ops::set1(-2.0f)));
  const V biased = Ops::fmadd(t, Ops::set1(1.44269504088896341f), magic);
  const V r = reduce_ln2<Ops>(t, Ops::sub(biased, magic));
  V q = Ops::fmadd(Ops::set1(1.3882492203e-3f), r, Ops::set1(8.3665736020e-3f));
  q = Ops::fmadd(q, r, Ops::set1(4.1667200625e-2f));
  q = Ops::fmadd(q, r, Ops::set1(1.6666543484e-1f));
  q = Ops::fmadd(q, r, Ops::set1(4.9999997020e-1f));
  const V expm1_r = Ops::fmadd(Ops::mul(r, r), q, r);
  const V scale = Ops::pow2_from_biased(biased);
  const V m = Ops::fmadd(scale, expm1_r, Ops::sub(scale, one));
  return Ops::copysign(Ops::div(m, Ops::add(m, Ops::set1(2.0f))), x);
}

}  // namespace
