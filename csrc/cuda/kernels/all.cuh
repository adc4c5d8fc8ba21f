// Every kernel family and the table of their entries for one target (see
// prelude.cuh); included once by kernels.cu (the GPU) and once by
// kernels_emu.cpp (the emulated device).
#pragma once

#include "cuda/kernels/activation.cuh"
#include "cuda/kernels/kernels.h"
#include "cuda/kernels/loss.cuh"
#include "cuda/kernels/softmax.cuh"

namespace minidnn::cuda::MINIDNN_CUDA_TARGET {

const DeviceKernels& kernels() {
  static const DeviceKernels table{activation_forward, activation_backward, softmax_forward_workspace,
                                   softmax_forward,    softmax_backward,    loss_forward,
                                   loss_backward};
  return table;
}

}  // namespace minidnn::cuda::MINIDNN_CUDA_TARGET
