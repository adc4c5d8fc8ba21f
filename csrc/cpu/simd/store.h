// Writing a row of results from a vector-valued function of the index.
// Written once over a SIMD vocabulary; anonymous namespace as README.md says.
#pragma once

#include <cstdint>

namespace {

// y[i] for i in [0, n) from value(i, len), a vector of the results for
// [i, i + len), len <= W (len < W only for the tail).
//
// Plain stores on purpose: streaming (non-temporal) stores, which skip the
// read for ownership of large outputs, were slower on 10 of the 12 large
// softmax-family cases we measured (bench/NOTES.md).
template <class Ops, class Value>
void store_row(float* y, int64_t n, Value value) {
  int64_t i = 0;
  for (; i + Ops::W <= n; i += Ops::W) Ops::store(y + i, value(i, int64_t{Ops::W}));
  if (i < n) Ops::store_tail(y + i, value(i, n - i), n - i);
}

// A vector of x[i, i + len): a full load when len == W.
template <class Ops>
typename Ops::V load_part(const float* x, int64_t i, int64_t len, float fill) {
  return len == Ops::W ? Ops::load(x + i) : Ops::load_tail(x + i, len, fill);
}

}  // namespace
