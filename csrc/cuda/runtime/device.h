// CUDA device queries. The module links the CUDA runtime statically and
// never the driver library, so these answer "no device" instead of failing
// to load on machines without a GPU or driver.
#pragma once

#include <cstdint>
#include <string>

namespace minidnn::cuda {

bool built();                       // compiled with the CUDA backend
int device_count();                 // 0 without a usable driver and device
std::string device_name(int index); // throws std::out_of_range for a bad index
std::string status();               // why device_count() is 0, or "ok"
int runtime_version();              // CUDA runtime linked in, e.g. 13000; 0 when not built

// Interop with other CUDA libraries (bindings/cuda.cpp). Streams are named
// as __cuda_array_interface__ and DLPack name them: 1 is the legacy default
// stream (where minidnn's kernels run), 2 the per-thread default stream,
// any other value a cudaStream_t.
int current_device();
// The device whose memory p points into (device or managed memory), or -1
// for host memory.
int device_of_pointer(const void* p);
// Work queued on `waiting` from now on starts only after the work queued so
// far on `done` (an event, no host synchronization).
void stream_wait(uintptr_t waiting, uintptr_t done);

}  // namespace minidnn::cuda
