// Elementwise activations: the kernel table each ISA variant fills in.
#pragma once

#include <cstdint>

namespace minidnn::cpu {

enum class Activation { relu = 0, leaky_relu = 1, sigmoid = 2, tanh = 3 };

struct ActivationKernels {
  // y = f(x) over n contiguous floats; alpha is leaky_relu's slope.
  void (*forward)(Activation f, const float* x, float* y, int64_t n, float alpha);
  // grad_x = grad_y * f'(.), where `saved` is x for relu / leaky_relu and
  // y = f(x) for sigmoid / tanh (as PyTorch saves them).
  void (*backward)(Activation f, const float* grad_y, const float* saved, float* grad_x, int64_t n,
                   float alpha);
};

const ActivationKernels& activation_kernels_scalar();
const ActivationKernels& activation_kernels_avx2();
const ActivationKernels& activation_kernels_avx512();

// The table of the active ISA (runtime/cpu_features.h).
const ActivationKernels& activation_kernels();

}  // namespace minidnn::cpu
