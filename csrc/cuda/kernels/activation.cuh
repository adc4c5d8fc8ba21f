// Elementwise activations and their backwards on a CUDA device (see
// prelude.cuh for the two compilations). Grid-stride loops with 64-bit
// indices; 16-byte float4 loads and stores where every pointer is 16-byte
// aligned (always, for arrays of the allocator), a scalar loop for the tail.
#pragma once

#include "cpu/activation/activation.h"
#include "cuda/kernels/prelude.cuh"

namespace minidnn::cuda::MINIDNN_CUDA_TARGET {

using cpu::Activation;

// The same formulas as the CPU kernels (cpu/activation/activation_impl.h).
template <Activation F>
__device__ __forceinline__ float activate(float x, float alpha) {
  if constexpr (F == Activation::relu) {
    return x <= 0.0f ? 0.0f : x;  // NaN propagates
  } else if constexpr (F == Activation::leaky_relu) {
    return x > 0.0f ? x : alpha * x;
  } else if constexpr (F == Activation::sigmoid) {
    // exp of a non-positive argument only: no overflow for any x.
    const float e = expf(-fabsf(x));
    // __frcp_rn: the correctly rounded 1 / v, as the division, without the
    // division's slow-path call (which made this kernel use a stack frame).
    const float r = __frcp_rn(1.0f + e);
    return x >= 0.0f ? r : e * r;
  } else {
    return tanhf(x);
  }
}

template <Activation F>
__device__ __forceinline__ float activate_grad(float g, float s, float alpha) {
  if constexpr (F == Activation::relu) {
    return s <= 0.0f ? 0.0f : g;
  } else if constexpr (F == Activation::leaky_relu) {
    return s > 0.0f ? g : alpha * g;
  } else if constexpr (F == Activation::sigmoid) {
    return g * s * (1.0f - s);
  } else {
    // (1 - y)(1 + y): exact 1 - y near y = 1.
    return g * ((1.0f - s) * (1.0f + s));
  }
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <Activation F>
__global__ void __launch_bounds__(kElementwiseBlock)
    activation_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float alpha) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  int64_t scalar_begin = 0;
  if (aligned16(x) && aligned16(y)) {
    const int64_t vectors = n / 4;
    for (int64_t i = first; i < vectors; i += stride) {
      float4 v = reinterpret_cast<const float4*>(x)[i];
      v.x = activate<F>(v.x, alpha);
      v.y = activate<F>(v.y, alpha);
      v.z = activate<F>(v.z, alpha);
      v.w = activate<F>(v.w, alpha);
      reinterpret_cast<float4*>(y)[i] = v;
    }
    scalar_begin = vectors * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) y[i] = activate<F>(x[i], alpha);
}

template <Activation F>
__global__ void __launch_bounds__(kElementwiseBlock)
    activation_backward_kernel(const float* __restrict__ g, const float* __restrict__ s, float* __restrict__ gx,
                               int64_t n, float alpha) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  int64_t scalar_begin = 0;
  if (aligned16(g) && aligned16(s) && aligned16(gx)) {
    const int64_t vectors = n / 4;
    for (int64_t i = first; i < vectors; i += stride) {
      const float4 a = reinterpret_cast<const float4*>(g)[i];
      const float4 b = reinterpret_cast<const float4*>(s)[i];
      float4 r;
      r.x = activate_grad<F>(a.x, b.x, alpha);
      r.y = activate_grad<F>(a.y, b.y, alpha);
      r.z = activate_grad<F>(a.z, b.z, alpha);
      r.w = activate_grad<F>(a.w, b.w, alpha);
      reinterpret_cast<float4*>(gx)[i] = r;
    }
    scalar_begin = vectors * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) gx[i] = activate_grad<F>(g[i], s[i], alpha);
}

template <Activation F>
void forward_as(const char* name, const float* x, float* y, int64_t n, float alpha) {
  const unsigned grid = grid_stride_blocks((n + 3) / 4, kElementwiseBlock);
  launch(name, activation_forward_kernel<F>, dim3(grid), dim3(kElementwiseBlock), 0, x, y, n, alpha);
}

template <Activation F>
void backward_as(const char* name, const float* g, const float* s, float* gx, int64_t n, float alpha) {
  const unsigned grid = grid_stride_blocks((n + 3) / 4, kElementwiseBlock);
  launch(name, activation_backward_kernel<F>, dim3(grid), dim3(kElementwiseBlock), 0, g, s, gx, n, alpha);
}

inline void activation_forward(Activation f, const float* x, float* y, int64_t n, float alpha) {
  if (n == 0) return;
  switch (f) {
    case Activation::relu: return forward_as<Activation::relu>("relu_forward", x, y, n, alpha);
    case Activation::leaky_relu: return forward_as<Activation::leaky_relu>("leaky_relu_forward", x, y, n, alpha);
    case Activation::sigmoid: return forward_as<Activation::sigmoid>("sigmoid_forward", x, y, n, alpha);
    case Activation::tanh: return forward_as<Activation::tanh>("tanh_forward", x, y, n, alpha);
  }
}

inline void activation_backward(Activation f, const float* g, const float* s, float* gx, int64_t n, float alpha) {
  if (n == 0) return;
  switch (f) {
    case Activation::relu: return backward_as<Activation::relu>("relu_backward", g, s, gx, n, alpha);
    case Activation::leaky_relu:
      return backward_as<Activation::leaky_relu>("leaky_relu_backward", g, s, gx, n, alpha);
    case Activation::sigmoid: return backward_as<Activation::sigmoid>("sigmoid_backward", g, s, gx, n, alpha);
    case Activation::tanh: return backward_as<Activation::tanh>("tanh_backward", g, s, gx, n, alpha);
  }
}

}  // namespace minidnn::cuda::MINIDNN_CUDA_TARGET
