// Fused pointwise gate kernels of the recurrent cells, written once over a
// SIMD vocabulary and instantiated by recurrent_<isa>.cpp (anonymous
// namespace: see simd/README.md). Each walks the rows of the batch and,
// within a row, the hidden units a vector at a time (a masked tail for H
// not a multiple of the width); every output element depends only on the
// inputs at its own (row, unit), so the thread split changes no result.
#pragma once

#include <cstdint>

#include "cpu/recurrent/recurrent.h"
#include "cpu/simd/math.h"
#include "cpu/simd/store.h"
#include "runtime/threads.h"

namespace {

// Below this many gate elements a second thread costs more to wake than it saves.
constexpr int64_t kRecurrentGrain = int64_t{1} << 14;

// body(row, j, len) for rows [row_begin, row_end) and the vectors [j, j + len)
// of units [u_begin, u_end), on the calling thread. u_begin is a multiple of
// the vector width, so that every unit falls in the same vector lane
// whatever the split (vsigmoid's range test looks at whole vectors).
template <class Ops, class Body>
void for_each_vector_in(int64_t row_begin, int64_t row_end, int64_t u_begin, int64_t u_end, const Body& body) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    int64_t j = u_begin;
    for (; j + Ops::W <= u_end; j += Ops::W) body(row, j, int64_t{Ops::W});
    if (j < u_end) body(row, j, u_end - j);
  }
}

// body(row, j, len) for every row and every vector [j, j + len) of [0, hs),
// rows split over the threads.
template <class Ops, class Body>
void for_each_vector(int64_t n, int64_t hs, int64_t gates, const Body& body) {
  minidnn::parallel(minidnn::threads_for(n * hs * gates, kRecurrentGrain), [&](int64_t t, int64_t nt) {
    for_each_vector_in<Ops>(n * t / nt, n * (t + 1) / nt, 0, hs, body);
  });
}

template <class Ops>
void store_part(float* p, int64_t len, typename Ops::V v) {
  if (len == Ops::W) {
    Ops::store(p, v);
  } else {
    Ops::store_tail(p, v, len);
  }
}

template <class Ops>
typename Ops::V load_at(const float* p, int64_t len) {
  return load_part<Ops>(p, 0, len, 0.0f);
}

// sigmoid(x) and its complement 1 - sigmoid(x) = sigmoid(-x), each to full
// relative accuracy: with e = exp(-|x|), 1 / (1 + e) and e / (1 + e). The
// backwards take sigmoid's derivative as their product, which stays
// accurate where a gate saturates (1 - s from a rounded s would not).
template <class Ops>
void sigmoid_pair(typename Ops::V x, typename Ops::V* s, typename Ops::V* complement) {
  using V = typename Ops::V;
  const V e = vexp<Ops>(Ops::sub(Ops::zero(), Ops::abs(x)));
  const V q = Ops::div(Ops::set1(1.0f), Ops::add(Ops::set1(1.0f), e));
  const V p = Ops::mul(e, q);
  const auto negative = Ops::lt(x, Ops::zero());
  *s = Ops::select(negative, p, q);
  *complement = Ops::select(negative, q, p);
}

// tanh's derivative 1 - tanh(x)^2 = 4e / (1 + e)^2 with e = exp(-2|x|):
// full relative accuracy where tanh saturates (1 - y^2 from a tanh y
// within a few ulp of 1 keeps only a few bits). NaN propagates.
template <class Ops>
typename Ops::V tanh_grad(typename Ops::V x) {
  using V = typename Ops::V;
  const V e = vexp<Ops>(Ops::mul(Ops::abs(x), Ops::set1(-2.0f)));
  const V q = Ops::div(Ops::set1(1.0f), Ops::add(Ops::set1(1.0f), e));
  return Ops::mul(Ops::mul(Ops::set1(4.0f), e), Ops::mul(q, q));
}

// ------------------------------------------------------------------ LSTM

// The LSTM forward of row `row`, units [j, j + len) (one vector).
template <class Ops>
void lstm_forward_vector(int64_t hs, const float* gates, const float* c, float* h1, float* c1, int64_t row, int64_t j,
                         int64_t len) {
  using V = typename Ops::V;
  const float* a = gates + row * 4 * hs + j;
  const int64_t at = row * hs + j;
  const V i = vsigmoid<Ops>(load_at<Ops>(a, len));
  const V f = vsigmoid<Ops>(load_at<Ops>(a + hs, len));
  const V g = vtanh<Ops>(load_at<Ops>(a + 2 * hs, len));
  const V o = vsigmoid<Ops>(load_at<Ops>(a + 3 * hs, len));
  const V cn = Ops::fmadd(f, load_at<Ops>(c + at, len), Ops::mul(i, g));
  store_part<Ops>(c1 + at, len, cn);
  store_part<Ops>(h1 + at, len, Ops::mul(o, vtanh<Ops>(cn)));
}

template <class Ops>
void lstm_forward(int64_t n, int64_t hs, const float* gates, const float* c, float* h1, float* c1) {
  for_each_vector<Ops>(n, hs, 4, [&](int64_t row, int64_t j, int64_t len) {
    lstm_forward_vector<Ops>(hs, gates, c, h1, c1, row, j, len);
  });
}

template <class Ops>
void lstm_forward_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* gates, const float* c,
                        float* h1, float* c1) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    lstm_forward_vector<Ops>(hs, gates, c, h1, c1, row, j, len);
  });
}

// The LSTM backward of row `row`, units [j, j + len) (one vector).
template <class Ops>
void lstm_backward_vector(int64_t hs, float* gates, const float* c, const float* grad_h1, const float* grad_c1,
                          float* grad_c, int64_t row, int64_t j, int64_t len) {
  using V = typename Ops::V;
  float* a = gates + row * 4 * hs + j;
  const int64_t at = row * hs + j;
  V i, ic, f, fc, o, oc;
  sigmoid_pair<Ops>(load_at<Ops>(a, len), &i, &ic);
  sigmoid_pair<Ops>(load_at<Ops>(a + hs, len), &f, &fc);
  const V ag = load_at<Ops>(a + 2 * hs, len);
  const V g = vtanh<Ops>(ag);
  sigmoid_pair<Ops>(load_at<Ops>(a + 3 * hs, len), &o, &oc);
  const V cv = load_at<Ops>(c + at, len);
  const V cn = Ops::fmadd(f, cv, Ops::mul(i, g));
  const V tc = vtanh<Ops>(cn);
  const V gh = grad_h1 ? load_at<Ops>(grad_h1 + at, len) : Ops::zero();
  const V gc = grad_c1 ? load_at<Ops>(grad_c1 + at, len) : Ops::zero();
  const V dc = Ops::fmadd(Ops::mul(gh, o), tanh_grad<Ops>(cn), gc);
  store_part<Ops>(a, len, Ops::mul(Ops::mul(dc, g), Ops::mul(i, ic)));
  store_part<Ops>(a + hs, len, Ops::mul(Ops::mul(dc, cv), Ops::mul(f, fc)));
  store_part<Ops>(a + 2 * hs, len, Ops::mul(Ops::mul(dc, i), tanh_grad<Ops>(ag)));
  store_part<Ops>(a + 3 * hs, len, Ops::mul(Ops::mul(gh, tc), Ops::mul(o, oc)));
  store_part<Ops>(grad_c + at, len, Ops::mul(dc, f));
}

template <class Ops>
void lstm_backward(int64_t n, int64_t hs, float* gates, const float* c, const float* grad_h1, const float* grad_c1,
                   float* grad_c) {
  for_each_vector<Ops>(n, hs, 4, [&](int64_t row, int64_t j, int64_t len) {
    lstm_backward_vector<Ops>(hs, gates, c, grad_h1, grad_c1, grad_c, row, j, len);
  });
}

template <class Ops>
void lstm_backward_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* gates, const float* c,
                         const float* grad_h1, const float* grad_c1, float* grad_c) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    lstm_backward_vector<Ops>(hs, gates, c, grad_h1, grad_c1, grad_c, row, j, len);
  });
}

// ------------------------------------------------------------------- GRU

template <class Ops>
void gru_forward_vector(int64_t hs, const float* gi, const float* gh, const float* h, float* h1, bool reset_applied,
                        int64_t row, int64_t j, int64_t len) {
  using V = typename Ops::V;
  const float* pi = gi + row * 3 * hs + j;
  const float* ph = gh + row * 3 * hs + j;
  const int64_t at = row * hs + j;
  const V z = vsigmoid<Ops>(Ops::add(load_at<Ops>(pi + hs, len), load_at<Ops>(ph + hs, len)));
  V hn = load_at<Ops>(ph + 2 * hs, len);
  if (!reset_applied) {
    const V r = vsigmoid<Ops>(Ops::add(load_at<Ops>(pi, len), load_at<Ops>(ph, len)));
    hn = Ops::mul(r, hn);
  }
  const V nn = vtanh<Ops>(Ops::add(load_at<Ops>(pi + 2 * hs, len), hn));
  // (1 - z) n + z h = n + z (h - n)
  store_part<Ops>(h1 + at, len, Ops::fmadd(z, Ops::sub(load_at<Ops>(h + at, len), nn), nn));
}

template <class Ops>
void gru_forward(int64_t n, int64_t hs, const float* gi, const float* gh, const float* h, float* h1,
                 bool reset_applied) {
  for_each_vector<Ops>(n, hs, 3, [&](int64_t row, int64_t j, int64_t len) {
    gru_forward_vector<Ops>(hs, gi, gh, h, h1, reset_applied, row, j, len);
  });
}

template <class Ops>
void gru_forward_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* gi, const float* gh,
                       const float* h, float* h1, bool reset_applied) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    gru_forward_vector<Ops>(hs, gi, gh, h, h1, reset_applied, row, j, len);
  });
}

template <class Ops>
void gru_reset_vector(int64_t hs, const float* gi, const float* gh, const float* h, float* rh, int64_t row, int64_t j,
                      int64_t len) {
  const int64_t at = row * hs + j, g = row * 3 * hs + j;
  const typename Ops::V r = vsigmoid<Ops>(Ops::add(load_at<Ops>(gi + g, len), load_at<Ops>(gh + g, len)));
  store_part<Ops>(rh + at, len, Ops::mul(r, load_at<Ops>(h + at, len)));
}

template <class Ops>
void gru_reset(int64_t n, int64_t hs, const float* gi, const float* gh, const float* h, float* rh) {
  for_each_vector<Ops>(n, hs, 1, [&](int64_t row, int64_t j, int64_t len) {
    gru_reset_vector<Ops>(hs, gi, gh, h, rh, row, j, len);
  });
}

template <class Ops>
void gru_reset_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* gi, const float* gh,
                     const float* h, float* rh) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    gru_reset_vector<Ops>(hs, gi, gh, h, rh, row, j, len);
  });
}

// The GRU backward of row `row`, units [j, j + len) (one vector).
template <class Ops>
void gru_backward_vector(int64_t hs, float* gi, float* gh, const float* h, const float* grad_h1, float* grad_h,
                         bool reset_applied, int64_t row, int64_t j, int64_t len) {
  using V = typename Ops::V;
  float* pi = gi + row * 3 * hs + j;
  float* ph = gh + row * 3 * hs + j;
  const int64_t at = row * hs + j;
  V z, zc, r = Ops::zero(), rc = Ops::zero();
  sigmoid_pair<Ops>(Ops::add(load_at<Ops>(pi + hs, len), load_at<Ops>(ph + hs, len)), &z, &zc);
  const V hn = load_at<Ops>(ph + 2 * hs, len);
  V pre_n = Ops::add(load_at<Ops>(pi + 2 * hs, len), hn);
  if (!reset_applied) {
    sigmoid_pair<Ops>(Ops::add(load_at<Ops>(pi, len), load_at<Ops>(ph, len)), &r, &rc);
    pre_n = Ops::fmadd(r, hn, load_at<Ops>(pi + 2 * hs, len));
  }
  const V nn = vtanh<Ops>(pre_n);
  const V g = load_at<Ops>(grad_h1 + at, len);
  const V hv = load_at<Ops>(h + at, len);
  const V da_n = Ops::mul(Ops::mul(g, zc), tanh_grad<Ops>(pre_n));
  const V da_z = Ops::mul(Ops::mul(g, Ops::sub(hv, nn)), Ops::mul(z, zc));
  store_part<Ops>(grad_h + at, len, Ops::mul(g, z));
  store_part<Ops>(pi + hs, len, da_z);
  store_part<Ops>(pi + 2 * hs, len, da_n);
  if (!reset_applied) {
    const V da_r = Ops::mul(Ops::mul(da_n, hn), Ops::mul(r, rc));
    store_part<Ops>(pi, len, da_r);
    store_part<Ops>(ph, len, da_r);
    store_part<Ops>(ph + hs, len, da_z);
    store_part<Ops>(ph + 2 * hs, len, Ops::mul(da_n, r));
  }
}

template <class Ops>
void gru_backward(int64_t n, int64_t hs, float* gi, float* gh, const float* h, const float* grad_h1, float* grad_h,
                  bool reset_applied) {
  for_each_vector<Ops>(n, hs, 3, [&](int64_t row, int64_t j, int64_t len) {
    gru_backward_vector<Ops>(hs, gi, gh, h, grad_h1, grad_h, reset_applied, row, j, len);
  });
}

template <class Ops>
void gru_backward_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* gi, float* gh, const float* h,
                        const float* grad_h1, float* grad_h, bool reset_applied) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    gru_backward_vector<Ops>(hs, gi, gh, h, grad_h1, grad_h, reset_applied, row, j, len);
  });
}

template <class Ops>
void gru_backward_reset_vector(int64_t hs, float* gi, const float* gh, const float* h, const float* d_rh,
                               float* grad_h, int64_t row, int64_t j, int64_t len) {
  using V = typename Ops::V;
  const int64_t at = row * hs + j, g = row * 3 * hs + j;
  V r, rc;
  sigmoid_pair<Ops>(Ops::add(load_at<Ops>(gi + g, len), load_at<Ops>(gh + g, len)), &r, &rc);
  const V d = load_at<Ops>(d_rh + at, len);
  store_part<Ops>(gi + g, len, Ops::mul(Ops::mul(d, load_at<Ops>(h + at, len)), Ops::mul(r, rc)));
  store_part<Ops>(grad_h + at, len, Ops::fmadd(d, r, load_at<Ops>(grad_h + at, len)));
}

template <class Ops>
void gru_backward_reset(int64_t n, int64_t hs, float* gi, const float* gh, const float* h, const float* d_rh,
                        float* grad_h) {
  for_each_vector<Ops>(n, hs, 1, [&](int64_t row, int64_t j, int64_t len) {
    gru_backward_reset_vector<Ops>(hs, gi, gh, h, d_rh, grad_h, row, j, len);
  });
}

template <class Ops>
void gru_backward_reset_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* gi, const float* gh,
                              const float* h, const float* d_rh, float* grad_h) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    gru_backward_reset_vector<Ops>(hs, gi, gh, h, d_rh, grad_h, row, j, len);
  });
}

// ------------------------------------------------------------------- RNN

template <class Ops>
void rnn_forward_vector(int64_t hs, const float* a, float* h1, bool relu, int64_t row, int64_t j, int64_t len) {
  const int64_t at = row * hs + j;
  const typename Ops::V v = load_at<Ops>(a + at, len);
  store_part<Ops>(h1 + at, len, relu ? Ops::max(Ops::zero(), v) : vtanh<Ops>(v));
}

template <class Ops>
void rnn_forward(int64_t n, int64_t hs, float* a, bool relu) {
  for_each_vector<Ops>(n, hs, 1, [&](int64_t row, int64_t j, int64_t len) {
    rnn_forward_vector<Ops>(hs, a, a, relu, row, j, len);
  });
}

template <class Ops>
void rnn_forward_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, const float* a, float* h1, bool relu) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    rnn_forward_vector<Ops>(hs, a, h1, relu, row, j, len);
  });
}

// The RNN backward of row `row`, units [j, j + len) (one vector).
template <class Ops>
void rnn_backward_vector(int64_t hs, float* a, const float* grad_h1, bool relu, int64_t row, int64_t j, int64_t len) {
  using V = typename Ops::V;
  float* p = a + row * hs + j;
  const V v = load_at<Ops>(p, len);
  const V g = load_at<Ops>(grad_h1 + row * hs + j, len);
  store_part<Ops>(p, len, relu ? Ops::select(Ops::gt(v, Ops::zero()), g, Ops::zero()) : Ops::mul(g, tanh_grad<Ops>(v)));
}

template <class Ops>
void rnn_backward(int64_t n, int64_t hs, float* a, const float* grad_h1, bool relu) {
  for_each_vector<Ops>(n, hs, 1, [&](int64_t row, int64_t j, int64_t len) {
    rnn_backward_vector<Ops>(hs, a, grad_h1, relu, row, j, len);
  });
}

template <class Ops>
void rnn_backward_units(int64_t n, int64_t hs, int64_t u_begin, int64_t u_end, float* a, const float* grad_h1,
                        bool relu) {
  for_each_vector_in<Ops>(0, n, u_begin, u_end, [&](int64_t row, int64_t j, int64_t len) {
    rnn_backward_vector<Ops>(hs, a, grad_h1, relu, row, j, len);
  });
}

}  // namespace
