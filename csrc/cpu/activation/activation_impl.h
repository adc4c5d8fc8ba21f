// Elementwise activation kernels, written once over a SIMD vocabulary and
// instantiated by activation_<isa>.cpp (anonymous namespace: see
// simd/README.md).
#pragma once

#include <cstdint>

#include "cpu/activation/activation.h"
#include "cpu/simd/math.h"
#include "cpu/simd/store.h"
#include "runtime/threads.h"

namespace {

using minidnn::cpu::Activation;

// Below this many elements a second thread costs more to wake than it saves.
constexpr int64_t kActivationGrain = 1 << 15;

// Writes y[0, n) from value(i, len) (see store_row), split into contiguous
// per-thread ranges that start on a 64-byte boundary of the index space.
template <class Ops, class Value>
void write_elementwise(float* y, int64_t n, Value value) {
  const bool streaming = n >= kStreamMinFloats;
  minidnn::parallel(minidnn::threads_for(n, kActivationGrain), [&](int64_t t, int64_t nt) {
    const int64_t lines = (n + 15) / 16;
    const int64_t begin = lines * t / nt * 16;
    const int64_t end_line = lines * (t + 1) / nt * 16;
    const int64_t end = end_line < n ? end_line : n;
    if (begin < end) {
      write_row<Ops>(y + begin, end - begin, streaming, [&](int64_t i, int64_t len) { return value(begin + i, len); });
      if (streaming) Ops::stream_fence();
    }
  });
}

template <class Ops>
typename Ops::V activate(Activation f, typename Ops::V x, typename Ops::V alpha) {
  switch (f) {
    case Activation::relu: return Ops::max(Ops::zero(), x);
    case Activation::leaky_relu: return Ops::select(Ops::gt(x, Ops::zero()), x, Ops::mul(alpha, x));
    case Activation::sigmoid: return vsigmoid<Ops>(x);
    case Activation::tanh: return vtanh<Ops>(x);
  }
  return x;
}

template <class Ops>
typename Ops::V activate_grad(Activation f, typename Ops::V g, typename Ops::V s, typename Ops::V alpha) {
  using V = typename Ops::V;
  const V one = Ops::set1(1.0f);
  switch (f) {
    case Activation::relu: return Ops::select(Ops::le(s, Ops::zero()), Ops::zero(), g);
    case Activation::leaky_relu: return Ops::select(Ops::gt(s, Ops::zero()), g, Ops::mul(alpha, g));
    case Activation::sigmoid: return Ops::mul(Ops::mul(g, s), Ops::sub(one, s));
    // (1 - y)(1 + y): exact 1 - y for y near 1 even without a fused multiply-add.
    case Activation::tanh: return Ops::mul(g, Ops::mul(Ops::sub(one, s), Ops::add(one, s)));
  }
  return g;
}

template <class Ops, Activation F>
void forward_as(const float* x, float* y, int64_t n, float alpha) {
  const typename Ops::V a = Ops::set1(alpha);
  write_elementwise<Ops>(y, n, [&](int64_t i, int64_t len) {
    return activate<Ops>(F, load_part<Ops>(x, i, len, 0.0f), a);
  });
}

template <class Ops, Activation F>
void backward_as(const float* g, const float* s, float* gx, int64_t n, float alpha) {
  const typename Ops::V a = Ops::set1(alpha);
  write_elementwise<Ops>(gx, n, [&](int64_t i, int64_t len) {
    return activate_grad<Ops>(F, load_part<Ops>(g, i, len, 0.0f), load_part<Ops>(s, i, len, 0.0f), a);
  });
}

template <class Ops>
void activation_forward(Activation f, const float* x, float* y, int64_t n, float alpha) {
  switch (f) {
    case Activation::relu: return forward_as<Ops, Activation::relu>(x, y, n, alpha);
    case Activation::leaky_relu: return forward_as<Ops, Activation::leaky_relu>(x, y, n, alpha);
    case Activation::sigmoid: return forward_as<Ops, Activation::sigmoid>(x, y, n, alpha);
    case Activation::tanh: return forward_as<Ops, Activation::tanh>(x, y, n, alpha);
  }
}

template <class Ops>
void activation_backward(Activation f, const float* g, const float* s, float* gx, int64_t n, float alpha) {
  switch (f) {
    case Activation::relu: return backward_as<Ops, Activation::relu>(g, s, gx, n, alpha);
    case Activation::leaky_relu: return backward_as<Ops, Activation::leaky_relu>(g, s, gx, n, alpha);
    case Activation::sigmoid: return backward_as<Ops, Activation::sigmoid>(g, s, gx, n, alpha);
    case Activation::tanh: return backward_as<Ops, Activation::tanh>(g, s, gx, n, alpha);
  }
}

}  // namespace
