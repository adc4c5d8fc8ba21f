// The CUDA kernels' host-side entries, one table per device: the table of
// the emulated device (compiled by the host compiler in every build) and
// the GPU's (compiled by nvcc, absent without the CUDA backend). The
// bindings choose a table by the device of the arrays (bindings/cuda.cpp):
// the one place where device dispatch happens.
//
// Pointers are device pointers of that table's device; every entry runs on
// the default stream and returns once the work is queued (at once on the
// emulator, which runs it synchronously); errors are std::runtime_error.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/activation/activation.h"
#include "cuda/runtime/memory.h"

namespace minidnn::cuda {

using cpu::Activation;

// A loss over its input (logits or log-probabilities) viewed as
// (outer, classes, inner), one element per (outer, inner) position; device
// pointers. Exactly one of index (outer * inner class indices) and prob
// (probabilities shaped like the input) is set.
struct LossInput {
  const float* x;
  const int64_t* index;
  const float* prob;
  const float* weight;  // (classes), or null for all ones
  int64_t ignore_index;
  float label_smoothing;
  int64_t outer, classes, inner;
};

enum class LossReduction { none, mean, sum };

// A reduction's sums over the elements: the loss, the weight "mean" divides
// by, and the first element whose class target is out of range (the
// element count when none is).
struct LossPartial {
  double loss;
  double weight;
  int64_t first_bad;
};

// Device memory a loss entry reduces in; `total` is the result.
constexpr unsigned kMaxLossPartials = 256;
struct LossWorkspace {
  LossPartial partials[kMaxLossPartials];
  LossPartial total;
};

// grad_loss of a loss backward: per_element (device, "none"), else the
// scalar from device memory when device_scalar is set, or `scalar`.
struct LossGrad {
  const float* per_element = nullptr;
  const float* device_scalar = nullptr;
  float scalar = 1.0f;
};

struct DeviceKernels {
  // y = f(x) over n floats; alpha is leaky_relu's slope.
  void (*activation_forward)(Activation f, const float* x, float* y, int64_t n, float alpha);
  // grad_x = grad_y * f'(.), `saved` as in cpu/activation/activation.h.
  void (*activation_backward)(Activation f, const float* grad_y, const float* saved, float* grad_x, int64_t n,
                              float alpha);
  // Bytes of device workspace softmax_forward takes for a view (0 for most).
  size_t (*softmax_forward_workspace)(int64_t outer, int64_t C, int64_t inner);
  // y = softmax(x) (log_softmax when `log`) over C of the (outer, C, inner)
  // view, with softmax_forward_workspace(outer, C, inner) bytes at workspace.
  void (*softmax_forward)(bool log, const float* x, float* y, int64_t outer, int64_t C, int64_t inner,
                          void* workspace);
  // grad_x of softmax / log_softmax from grad_y and y, same view.
  void (*softmax_backward)(bool log, const float* grad_y, const float* y, float* grad_x, int64_t outer, int64_t C,
                           int64_t inner);
  // cross_entropy (nll_loss when `nll`): the per-element losses into
  // per_element (outer * inner floats; the output for "none"), and for
  // "mean" / "sum" the reduced loss into out[0]. For class targets
  // ws->total.first_bad says afterwards whether one was out of range.
  void (*loss_forward)(bool nll, const LossInput& in, LossReduction reduction, float* per_element, LossWorkspace* ws,
                       float* out);
  // grad of the loss wrt its input, shaped like it; ws as above.
  void (*loss_backward)(bool nll, const LossInput& in, LossReduction reduction, const LossGrad& grad_loss,
                        LossWorkspace* ws, float* grad);
};

namespace emulated {
const DeviceKernels& kernels();
}  // namespace emulated

// nullptr in a build without the CUDA backend.
const DeviceKernels* gpu_kernels();

// The table of device d; std::runtime_error for the GPU in a build without it.
const DeviceKernels& kernels(Device d);

}  // namespace minidnn::cuda
