// The device queries of a build without the CUDA backend.
#include <stdexcept>
#include <string>

#include "cuda/runtime/device.h"

namespace minidnn::cuda {

bool built() { return false; }
int device_count() { return 0; }
std::string status() { return "minidnn was built without CUDA (MINIDNN_CUDA=OFF or no nvcc)"; }
std::string device_name(int index) {
  throw std::out_of_range("device: this build has no CUDA backend, so no device " + std::to_string(index));
}
int runtime_version() { return 0; }

}  // namespace minidnn::cuda
