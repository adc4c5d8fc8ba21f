// Softmax family on the CPU: the kernel table each ISA variant fills in, and
// the ISA-independent loss gathers.
#pragma once

#include <cstdint>

namespace minidnn::cpu {

// A contiguous tensor seen as (outer, classes, inner): `classes` is the axis
// reduced over, `inner` the product of the dims after it (1 for the last
// axis, H*W for the channel axis of NCHW).
struct SoftmaxShape {
  int64_t outer;
  int64_t classes;
  int64_t inner;
};

// Targets of a loss over a SoftmaxShape. Exactly one of `index` (outer*inner
// class indices) and `prob` (probabilities shaped like the logits) is set.
struct LossTarget {
  const int64_t* index = nullptr;
  const float* prob = nullptr;
  const float* weight = nullptr;  // (classes), or null for all ones
  int64_t ignore_index = -100;
  float label_smoothing = 0.0f;
};

// The loss-gradient scale of each element: g[i] when `per_element` is set
// (reduction "none"), otherwise `scalar` for every element.
struct LossScale {
  const float* per_element = nullptr;
  float scalar = 1.0f;
};

struct SoftmaxKernels {
  void (*softmax)(const float* x, float* y, SoftmaxShape s, bool log);
  // grad_x from grad_y and the forward's output y (softmax, or log-softmax
  // when `log`).
  void (*softmax_backward)(const float* grad_y, const float* y, float* grad_x, SoftmaxShape s, bool log);
  // Unreduced loss of every element into loss (outer*inner), fused: one
  // pass over the logits. Returns how many class targets were out of range
  // (their loss is NaN); the caller validates first, so this is a guard.
  int64_t (*cross_entropy)(const float* logits, const LossTarget& t, SoftmaxShape s, double* loss);
  // grad_logits of sum_i scale_i * loss_i: one pass for the row statistics,
  // one that writes the gradient. Returns the out-of-range count as above.
  int64_t (*cross_entropy_backward)(const float* logits, const LossTarget& t, SoftmaxShape s,
                                    LossScale scale, float* grad);
};

const SoftmaxKernels& softmax_kernels_scalar();
const SoftmaxKernels& softmax_kernels_avx2();
const SoftmaxKernels& softmax_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const SoftmaxKernels& softmax_kernels();

// NLL is a gather (forward) and a scatter into zeros (backward): memory
// bound with no arithmetic to vectorize, so one version serves every ISA.
int64_t nll_loss_forward(const float* log_probs, const LossTarget& t, SoftmaxShape s, double* loss);
// NLL for the "mean" and "sum" reductions in one pass over the targets, on
// the calling thread, for up to kNllReducedMaxTargets targets: the summed
// loss and the summed weights of the non-ignored targets. Returns the
// number of targets out of range (never read through).
constexpr int64_t kNllReducedMaxTargets = int64_t{1} << 14;
int64_t nll_loss_reduced(const float* log_probs, const LossTarget& t, SoftmaxShape s, double* loss_sum,
                         double* weight_sum);
int64_t nll_loss_backward(const LossTarget& t, SoftmaxShape s, LossScale scale, float* grad);

}  // namespace minidnn::cpu
