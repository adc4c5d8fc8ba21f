// CUDA runtime calls checked: a failure is a std::runtime_error carrying
// CUDA's message (a Python RuntimeError through the bindings), never an abort.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace minidnn::cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

}  // namespace minidnn::cuda
