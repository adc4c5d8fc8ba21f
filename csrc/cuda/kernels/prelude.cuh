// What every kernel source includes first: the CUDA vocabulary (nvcc's own,
// or the emulation layer's for the host compiler) and the one launch helper.
//
// Each kernel source is compiled twice (README "The emulated CUDA device"):
// by nvcc in a .cu file that defines MINIDNN_CUDA_TARGET as `gpu`, and by the
// host compiler in an _emu.cpp file that defines it as `emulated`. Kernels
// and their host-side entries live in namespace
// minidnn::cuda::MINIDNN_CUDA_TARGET, so the two compilations link side by
// side into one module and the bindings pick one by the array's device
// (kernels/kernels.h).
#pragma once

#ifndef MINIDNN_CUDA_TARGET
#error "define MINIDNN_CUDA_TARGET (gpu or emulated) before including cuda/kernels/prelude.cuh"
#endif

#include <cstddef>
#include <cstdint>
#include <utility>

#ifdef __CUDACC__
#include <cuda_runtime.h>

#include "cuda/runtime/check.h"
// Dynamic shared memory of the launch, as T* `name`.
#define MINIDNN_DYNAMIC_SHARED(T, name)                     \
  extern __shared__ __align__(16) unsigned char name##_raw[]; \
  T* name = reinterpret_cast<T*>(name##_raw)
#else
#include "cuda/emu/emu.h"
#define MINIDNN_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::minidnn::emu::dynamic_shared())
#endif

namespace minidnn::cuda::MINIDNN_CUDA_TARGET {

// Launches kernel(args...) on grid x block threads with `shared_bytes` of
// dynamic shared memory: on the GPU in the .cu compilation (asynchronously,
// on the default stream; a launch error is a std::runtime_error with CUDA's
// message), on the emulated device in the host one (synchronously; a broken
// rule is an emu::KernelError). `name` names the kernel in every error.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            Args&&... args) {
#ifdef __CUDACC__
  kernel<<<grid, block, shared_bytes>>>(std::forward<Args>(args)...);
  check(cudaGetLastError(), name);
#else
  // Every CUDA thread calls the kernel with its own copies of the arguments,
  // converted to the parameter types as a launch would.
  auto call = [&] { kernel(static_cast<Params>(args)...); };
  using Call = decltype(call);
  ::minidnn::emu::launch(name, grid, block, shared_bytes,
                         {&call, [](const void* c) { (*static_cast<const Call*>(c))(); }});
#endif
}

// Threads a block of the elementwise (grid-stride) kernels.
constexpr unsigned kElementwiseBlock = 256;

// The multiprocessors of the device: the current GPU's (132 on an H100
// SXM), or the emulated device's 4, so few that the grid-stride loops of
// the kernels turn at the tests' small sizes.
inline int multiprocessors() {
#ifdef __CUDACC__
  int device = 0, count = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return count;
#else
  return 4;
#endif
}

// Blocks of a grid-stride kernel over `work` items a thread each: enough to
// fill the device 16 blocks a multiprocessor, and no more (the stride loop
// does the rest).
inline unsigned grid_stride_blocks(int64_t work, unsigned block) {
  const int64_t max_blocks = int64_t{multiprocessors()} * 16;
  const int64_t blocks = (work + block - 1) / block;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks < max_blocks ? blocks : max_blocks);
}

}  // namespace minidnn::cuda::MINIDNN_CUDA_TARGET
