#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/runtime/check.h"
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

int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

int device_of_pointer(const void* p) {
  cudaPointerAttributes attributes{};
  check(cudaPointerGetAttributes(&attributes, p), "cudaPointerGetAttributes");
  const bool on_device = attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  return on_device ? attributes.device : -1;
}

namespace {
cudaStream_t stream_handle(uintptr_t stream) {
  if (stream == 1) return cudaStreamLegacy;
  if (stream == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(stream);
}
}  // namespace

void stream_wait(uintptr_t waiting, uintptr_t done) {
  if (waiting == done) return;
  cudaEvent_t event = nullptr;
  check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  cudaError_t err = cudaEventRecord(event, stream_handle(done));
  const char* what = "cudaEventRecord";
  if (err == cudaSuccess) {
    err = cudaStreamWaitEvent(stream_handle(waiting), event, 0);
    what = "cudaStreamWaitEvent";
  }
  cudaEventDestroy(event);  // its resources go once the wait has passed it
  check(err, what);
}

}  // namespace minidnn::cuda
