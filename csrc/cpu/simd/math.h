// Transcendental functions written once over a SIMD vocabulary (Ops is one
// of ScalarOps, Avx2Ops, Avx512Ops). See README.md for why this is in an
// anonymous namespace.
#pragma once

namespace {

// e^r for r = x - n ln2 (|r| <= ln2 / 2), ln2 split in two parts so that
// n ln2 is exact. The polynomial 1 + r + r^2 P(r) has Cephes' minimax
// coefficients; P is evaluated as (p0 + p1 r) + r^2 ((p2 + p3 r) + r^2 (p4 +
// p5 r)) rather than by Horner's rule: the same six operations with a
// dependency chain three deep instead of five.
template <class Ops>
typename Ops::V exp_reduced(typename Ops::V x, typename Ops::V n) {
  using V = typename Ops::V;
  V r = Ops::fnmadd(n, Ops::set1(0.693359375f), x);
  r = Ops::fnmadd(n, Ops::set1(-2.12194440e-4f), r);
  const V r2 = Ops::mul(r, r);
  const V p01 = Ops::fmadd(Ops::set1(1.6666665459e-1f), r, Ops::set1(5.0000001201e-1f));
  const V p23 = Ops::fmadd(Ops::set1(8.3334519073e-3f), r, Ops::set1(4.1665795894e-2f));
  const V p45 = Ops::fmadd(Ops::set1(1.9875691500e-4f), r, Ops::set1(1.3981999507e-3f));
  const V p = Ops::fmadd(Ops::fmadd(p45, r2, p23), r2, p01);
  return Ops::fmadd(p, r2, Ops::add(r, Ops::set1(1.0f)));
}

// exp(x), within 2 ulp over the whole float range.
//
// Range reduction x = n ln2 + r, e^r by exp_reduced, then e^r * 2^n. The
// clamp keeps n in [-150, 129]: past 88.72 the scaling overflows to +inf,
// below -103.97 it underflows to 0, and in between the gradual-underflow
// results are rounded once.
// max(lo, x) keeps a NaN x (the vocabulary's NaN rule), so NaN propagates.
template <class Ops>
typename Ops::V vexp(typename Ops::V x) {
  using V = typename Ops::V;
  x = Ops::min(Ops::set1(89.0f), Ops::max(Ops::set1(-104.0f), x));
  const V n = Ops::round(Ops::mul(x, Ops::set1(1.44269504088896341f)));
  return Ops::scale_pow2(exp_reduced<Ops>(x, n), n);
}

// exp(z) for the arguments of softmax and cross-entropy, z = x - max(x) <=
// 88.7: the reduction and polynomial of vexp, with the rounding to an
// integer done by adding 1.5 * 2^23 (whose low bits then hold the biased
// exponent of 2^n) and results below the smallest normal float (z < -87.34,
// including -inf) flushed to 0, which moves a softmax output by less than
// 1.2e-38. About 40% fewer instructions than vexp.
template <class Ops>
typename Ops::V vexp_nonpositive(typename Ops::V z) {
  using V = typename Ops::V;
  const auto tiny = Ops::lt(z, Ops::set1(-87.3365447f));
  const V biased = Ops::fmadd(z, Ops::set1(1.44269504088896341f), Ops::set1(12582912.0f + 127.0f));
  const V n = Ops::sub(biased, Ops::set1(12582912.0f + 127.0f));
  return Ops::select(tiny, Ops::zero(), Ops::mul(exp_reduced<Ops>(z, n), Ops::pow2_from_biased(biased)));
}

// sigmoid(x) = 1 / (1 + e^-x), evaluated as s = 1 / (1 + e^-|x|) and
// e^-|x| * s for negative x: never overflows, and keeps full relative
// accuracy deep into the negative tail. Vectors with a lane below -87.3
// (a subnormal result) take the full-range exp, the rest the faster one.
template <class Ops>
typename Ops::V vsigmoid(typename Ops::V x) {
  using V = typename Ops::V;
  const V na = Ops::sub(Ops::zero(), Ops::abs(x));
  const V e = Ops::any(Ops::lt(na, Ops::set1(-87.0f))) ? vexp<Ops>(na) : vexp_nonpositive<Ops>(na);
  const V s = Ops::div(Ops::set1(1.0f), Ops::add(Ops::set1(1.0f), e));
  return Ops::select(Ops::lt(x, Ops::zero()), Ops::mul(e, s), s);
}

// tanh(x). For |x| < 0.5 the Taylor series to x^15 (truncation < 1e-8
// relative) avoids cancellation near zero; above, (1 - e) / (1 + e) with
// e = exp(-2|x|) <= 1/e, where 1 - e cannot cancel. Once e underflows the
// result is 1 either way, so the flushing exp serves. Odd symmetry restores
// the sign; a NaN fails |x| < 0.5 and flows through the exp branch.
template <class Ops>
typename Ops::V vtanh(typename Ops::V x) {
  using V = typename Ops::V;
  const V a = Ops::abs(x);
  const V z = Ops::mul(a, a);
  V p = Ops::set1(-929569.0f / 638512875.0f);
  p = Ops::fmadd(p, z, Ops::set1(21844.0f / 6081075.0f));
  p = Ops::fmadd(p, z, Ops::set1(-1382.0f / 155925.0f));
  p = Ops::fmadd(p, z, Ops::set1(62.0f / 2835.0f));
  p = Ops::fmadd(p, z, Ops::set1(-17.0f / 315.0f));
  p = Ops::fmadd(p, z, Ops::set1(2.0f / 15.0f));
  p = Ops::fmadd(p, z, Ops::set1(-1.0f / 3.0f));
  const V small = Ops::fmadd(Ops::mul(a, z), p, a);
  const V one = Ops::set1(1.0f);
  const V e = vexp_nonpositive<Ops>(Ops::mul(a, Ops::set1(-2.0f)));
  const V large = Ops::div(Ops::sub(one, e), Ops::add(one, e));
  return Ops::copysign(Ops::select(Ops::lt(a, Ops::set1(0.5f)), small, large), x);
}

}  // namespace
