// The device queries, memory and kernel table of the GPU in a build without
// the CUDA backend (the emulated device is there in every build).
#include <stdexcept>
#include <string>

#include "cuda/kernels/kernels.h"
#include "cuda/runtime/device.h"
#include "cuda/runtime/memory.h"

namespace minidnn::cuda {

bool built() { return false; }
int device_count() { return 0; }
std::string status() { return "minidnn was built without CUDA (MINIDNN_CUDA=OFF or no nvcc)"; }
std::string device_name(int index) {
  throw std::out_of_range("device: this build has no CUDA backend, so no device " + std::to_string(index));
}
int runtime_version() { return 0; }
int current_device() { throw std::runtime_error("this build of minidnn has no CUDA backend"); }
int device_of_pointer(const void*) { throw std::runtime_error("this build of minidnn has no CUDA backend"); }
void stream_wait(uintptr_t, uintptr_t) { throw std::runtime_error("this build of minidnn has no CUDA backend"); }
const MemoryBackend* gpu_memory() { return nullptr; }
const DeviceKernels* gpu_kernels() { return nullptr; }

}  // namespace minidnn::cuda
