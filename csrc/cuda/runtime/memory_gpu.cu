// The GPU's memory backend (cudaMalloc, never managed memory; see memory.h).
#include <cuda_runtime.h>

#include "cuda/runtime/check.h"
#include "cuda/runtime/memory.h"

namespace minidnn::cuda {
namespace {

void* gpu_allocate(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}
void gpu_release(void* p) { check(cudaFree(p), "cudaFree"); }
void gpu_to_device(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}
void gpu_to_host(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}
void gpu_device_to_device(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy on the device");
}

}  // namespace

const MemoryBackend* gpu_memory() {
  static const MemoryBackend backend{gpu_allocate, gpu_release, gpu_to_device, gpu_to_host, gpu_device_to_device};
  return &backend;
}

}  // namespace minidnn::cuda
