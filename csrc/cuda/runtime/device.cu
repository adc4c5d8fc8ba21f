#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/runtime/device.h"

namespace minidnn::cuda {

bool built() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return 0;
  }
  return n;
}

std::string status() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(err);
  }
  return n > 0 ? "ok" : "no CUDA device";
}

std::string device_name(int index) {
  const int n = device_count();
  if (index < 0 || index >= n) {
    throw std::out_of_range("device: expected an index in [0, " + std::to_string(n) + "), got " +
                            std::to_string(index));
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error("cudaGetDeviceProperties failed for device " + std::to_string(index));
  }
  return prop.name;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace minidnn::cuda
