// Writing a row of results from a vector-valued function of the index.
// Written once over a SIMD vocabulary; anonymous namespace as README.md says.
#pragma once

#include <cstdint>

namespace {

// y[i] for i in [0, n) from value(i, len), a vector of the results for
// [i, i + len), len <= W (len < W only for the tail).
template <class Ops, class Value>
void store_row(float* y, int64_t n, Value value) {
  int64_t i = 0;
  for (; i + Ops::W <= n; i += Ops::W) Ops::store(y + i, value(i, int64_t{Ops::W}));
  if (i < n) Ops::store_tail(y + i, value(i, n - i), n - i);
}

// store_row through streaming (non-temporal) stores, which skip the read
// for ownership a plain store makes of each output line: for outputs that
// go to memory, a third less traffic. Plain stores up to the first vector
// boundary of y and for the tail; value(i, len) then also sees len < W at
// the head. The caller issues Ops::stream_fence() once its thread has
// written its whole share, before the share is handed on.
template <class Ops, class Value>
void stream_row(float* y, int64_t n, Value value) {
  constexpr int64_t kVectorBytes = int64_t{Ops::W} * sizeof(float);
  const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(y) % kVectorBytes) / 4;
  int64_t i = misaligned == 0 ? 0 : (Ops::W - misaligned < n ? Ops::W - misaligned : n);
  if (i > 0) Ops::store_tail(y, value(0, i), i);
  for (; i + Ops::W <= n; i += Ops::W) Ops::stream(y + i, value(i, int64_t{Ops::W}));
  if (i < n) Ops::store_tail(y + i, value(i, n - i), n - i);
}

// Outputs of at least this many floats (32 MiB) are written by stream_row:
// they cannot stay in cache for the next op anyway. Smaller ones keep plain
// stores, which leave the output in L2/L3 for its consumer (16 MB outputs
// ran slower streamed; bench/NOTES.md).
constexpr int64_t kStreamMinFloats = int64_t{8} << 20;

// store_row or stream_row, as chosen once per op for its whole output.
template <class Ops, class Value>
void write_row(float* y, int64_t n, bool streaming, Value value) {
  if (streaming) {
    stream_row<Ops>(y, n, value);
  } else {
    store_row<Ops>(y, n, value);
  }
}

// A vector of x[i, i + len): a full load when len == W.
template <class Ops>
typename Ops::V load_part(const float* x, int64_t i, int64_t len, float fill) {
  return len == Ops::W ? Ops::load(x + i) : Ops::load_tail(x + i, len, fill);
}

}  // namespace
