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

#include <cstdint>

#include "cpu/activation/activation.h"
#include "cuda/runtime/memory.h"

namespace minidnn::cuda {

using cpu::Activation;

struct DeviceKernels {
  // y = f(x) over n floats; alpha is leaky_relu's slope.
  void (*activation_forward)(Activation f, const float* x, float* y, int64_t n, float alpha);
  // grad_x = grad_y * f'(.), `saved` as in cpu/activation/activation.h.
  void (*activation_backward)(Activation f, const float* grad_y, const float* saved, float* grad_x, int64_t n,
                              float alpha);
  // y = softmax(x) (log_softmax when `log`) over C of the (outer, C, inner) view.
  void (*softmax_forward)(bool log, const float* x, float* y, int64_t outer, int64_t C, int64_t inner);
  // grad_x of softmax / log_softmax from grad_y and y, same view.
  void (*softmax_backward)(bool log, const float* grad_y, const float* y, float* grad_x, int64_t outer, int64_t C,
                           int64_t inner);
};

namespace emulated {
const DeviceKernels& kernels();
}  // namespace emulated

// nullptr in a build without the CUDA backend.
const DeviceKernels* gpu_kernels();

// The table of device d; std::runtime_error for the GPU in a build without it.
const DeviceKernels& kernels(Device d);

}  // namespace minidnn::cuda
