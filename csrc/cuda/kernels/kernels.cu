// The kernels compiled by nvcc for the GPU (see prelude.cuh).
#define MINIDNN_CUDA_TARGET gpu
#include "cuda/kernels/all.cuh"

namespace minidnn::cuda {
const DeviceKernels* gpu_kernels() { return &gpu::kernels(); }
}  // namespace minidnn::cuda
