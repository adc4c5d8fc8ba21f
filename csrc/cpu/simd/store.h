// Writing a row of results, optionally with non-temporal (streaming) stores.
// Written once over a SIMD vocabulary; anonymous namespace as README.md says.
#pragma once

#include <cstdint>

namespace {

// Outputs at least this large are streamed past the caches: a large output
// is not read back before it is evicted, and streaming skips the read for
// ownership a cached store pays (a third of the traffic of a copy-like op).
// Smaller outputs stay cached for whatever reads them next.
constexpr int64_t kStreamBytes = int64_t{8} << 20;

inline bool should_stream(int64_t output_elements) {
  return output_elements * static_cast<int64_t>(sizeof(float)) >= kStreamBytes;
}

// y[i] for i in [0, n) from value(i, len), a vector of results for
// [i, i + len), len <= W. Streaming stores need W-aligned addresses, so
// they start after a partial head that reaches alignment; the caller's
// thread must call Ops::fence() before another thread reads y.
template <class Ops, class Value>
void store_row(float* y, int64_t n, bool stream, Value value) {
  int64_t i = 0;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(y);
  if (stream && addr % sizeof(float) == 0) {
    const int64_t misaligned = static_cast<int64_t>(addr / sizeof(float) % Ops::W);
    const int64_t head = misaligned == 0 ? 0 : (Ops::W - misaligned < n ? Ops::W - misaligned : n);
    if (head > 0) Ops::store_tail(y, value(int64_t{0}, head), head);
    for (i = head; i + Ops::W <= n; i += Ops::W) Ops::stream(y + i, value(i, int64_t{Ops::W}));
  } else {
    for (; i + Ops::W <= n; i += Ops::W) Ops::store(y + i, value(i, int64_t{Ops::W}));
  }
  if (i < n) Ops::store_tail(y + i, value(i, n - i), n - i);
}

// A vector of x[i, i + len): a full load when len == W.
template <class Ops>
typename Ops::V load_part(const float* x, int64_t i, int64_t len, float fill) {
  return len == Ops::W ? Ops::load(x + i) : Ops::load_tail(x + i, len, fill);
}

}  // namespace
