// NLL loss: a gather and a scatter, one version for every ISA (see softmax.h).
#include <atomic>
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
  std::atomic<int64_t> bad{0};
  // Over (outer, inner) as two loops: a division per element to recover
  // them from a flat index cost more than the gather itself.
  parallel_for(threads_for(s.outer * s.inner, kGrain), s.outer, [&](int64_t o) {
    const float* plane = log_probs + o * s.classes * s.inner;
    int64_t out_of_range = 0;
    for (int64_t j = 0, e = o * s.inner; j < s.inner; ++j, ++e) {
      const int64_t idx = t.index[e];
      const int kind = classify(t, idx, s.classes);
      if (kind == 1) {
        const double w = t.weight != nullptr ? t.weight[idx] : 1.0;
        loss[e] = -w * plane[idx * s.inner + j];
      } else {
        loss[e] = kind == 0 ? 0.0 : std::nan("");
        out_of_range += kind < 0;
      }
    }
    if (out_of_range > 0) bad.fetch_add(out_of_range, std::memory_order_relaxed);
  });
  return bad.load();
}

int64_t nll_loss_reduced(const float* log_probs, const LossTarget& t, SoftmaxShape s, double* loss_sum,
                         double* weight_sum) {
  // Four chains each: a dependent double addition costs 4 cycles.
  double losses[4] = {0.0, 0.0, 0.0, 0.0}, weights[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t bad = 0;
  for (int64_t o = 0, e = 0; o < s.outer; ++o) {
    const float* plane = log_probs + o * s.classes * s.inner;
    for (int64_t j = 0; j < s.inner; ++j, ++e) {
      const int64_t idx = t.index[e];
      const int kind = classify(t, idx, s.classes);
      if (kind == 1) {
        const double w = t.weight != nullptr ? t.weight[idx] : 1.0;
        losses[e & 3] -= w * plane[idx * s.inner + j];
        weights[e & 3] += w;
      }
      bad += kind < 0;
    }
  }
  *loss_sum = (losses[0] + losses[1]) + (losses[2] + losses[3]);
  *weight_sum = (weights[0] + weights[1]) + (weights[2] + weights[3]);
  return bad;
}

int64_t nll_loss_backward(const LossTarget& t, SoftmaxShape s, LossScale scale, float* grad) {
  const int64_t plane = s.classes * s.inner;
  std::atomic<int64_t> bad{0};
  parallel_for(threads_for(s.outer * plane, kGrain), s.outer, [&](int64_t o) {
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
      if (kind < 0) bad.fetch_add(1, std::memory_order_relaxed);
    }
  });
  return bad.load();
}

}  // namespace minidnn::cpu
