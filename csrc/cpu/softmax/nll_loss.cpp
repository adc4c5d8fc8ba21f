// NLL loss: a gather and a scatter, one version for every ISA (see softmax.h).
#include <omp.h>

#include <cmath>
#include <cstring>

#include "cpu/softmax/softmax.h"
#include "runtime/threads.h"

namespace minidnn::cpu {
namespace {

constexpr int64_t kGrain = 1 << 14;

// 1 for a valid class, 0 for ignore_index, -1 out of range.
int classify(const LossTarget& t, int64_t idx, int64_t classes) {
  if (idx == t.ignore_index) return 0;
  return idx >= 0 && idx < classes ? 1 : -1;
}

}  // namespace

int64_t nll_loss_forward(const float* log_probs, const LossTarget& t, SoftmaxShape s, double* loss) {
  const int64_t elems = s.outer * s.inner;
  const int threads = threads_for(elems, kGrain);
  int64_t bad = 0;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1) reduction(+ : bad)
  for (int64_t e = 0; e < elems; ++e) {
    const int64_t idx = t.index[e];
    const int kind = classify(t, idx, s.classes);
    if (kind == 1) {
      const int64_t o = e / s.inner, j = e % s.inner;
      const double w = t.weight != nullptr ? t.weight[idx] : 1.0;
      loss[e] = -w * log_probs[(o * s.classes + idx) * s.inner + j];
    } else {
      loss[e] = kind == 0 ? 0.0 : std::nan("");
      bad += kind < 0;
    }
  }
  return bad;
}

int64_t nll_loss_backward(const LossTarget& t, SoftmaxShape s, LossScale scale, float* grad) {
  const int64_t plane = s.classes * s.inner;
  const int threads = threads_for(s.outer * plane, kGrain);
  int64_t bad = 0;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1) reduction(+ : bad)
  for (int64_t o = 0; o < s.outer; ++o) {
    float* g = grad + o * plane;
    std::memset(g, 0, static_cast<size_t>(plane) * sizeof(float));
    for (int64_t j = 0; j < s.inner; ++j) {
      const int64_t e = o * s.inner + j;
      const int64_t idx = t.index[e];
      const int kind = classify(t, idx, s.classes);
      if (kind == 1) {
        const float w = t.weight != nullptr ? t.weight[idx] : 1.0f;
        const float ge = scale.per_element != nullptr ? scale.per_element[e] : scale.scalar;
        g[idx * s.inner + j] = -w * ge;
      }
      bad += kind < 0;
    }
  }
  return bad;
}

}  // namespace minidnn::cpu
