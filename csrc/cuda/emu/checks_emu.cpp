// Test-only kernels of the emulated device (see checks.h). Every kernel maps
// x (n floats) to y (n floats).
#define MINIDNN_CUDA_TARGET emulated
#include "cuda/emu/checks.h"

#include <stdexcept>

#include "cuda/kernels/prelude.cuh"

namespace minidnn::cuda::emulated {
namespace {

constexpr unsigned kReverseBlock = 64;

// Reverses each block-sized chunk of x through dynamic shared memory (the
// chunk past n holds zeros); with `barrier` false a thread may read its
// mirror's element before the mirror wrote it: the result then depends on
// the order the threads run in.
__global__ void reverse_chunks(const float* x, float* y, int64_t n, bool barrier) {
  MINIDNN_DYNAMIC_SHARED(float, chunk);
  const unsigned t = threadIdx.x;
  const int64_t base = int64_t{blockIdx.x} * blockDim.x;
  chunk[t] = base + t < n ? x[base + t] : 0.0f;
  if (barrier) __syncthreads();
  const unsigned mirrored = blockDim.x - 1 - t;
  if (base + t < n) y[base + t] = chunk[mirrored];
}

// Sums 64-element chunks with a tree in static shared memory over a 3-D
// block (4, 4, 4) on a 3-D grid, then a warp shuffle and a ballot: y[chunk
// start] = the sum, y[chunk start + 1] = the number of positive elements,
// the rest of the chunk 0.
__global__ void chunk_sums(const float* x, float* y, int64_t n) {
  __shared__ float partial[64];
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int64_t block = blockIdx.x + int64_t{gridDim.x} * (blockIdx.y + int64_t{gridDim.y} * blockIdx.z);
  const int64_t i = block * 64 + t;
  const float v = i < n ? x[i] : 0.0f;
  partial[t] = v;
  __syncthreads();
  if (t < 32) partial[t] += partial[t + 32];
  __syncthreads();
  // Both warps reduce the 32 partial sums; each counts its positives.
  float s = partial[t % 32];
  for (int offset = 16; offset > 0; offset /= 2) s += __shfl_xor_sync(0xffffffffu, s, offset);
  const unsigned positives = __popc(__ballot_sync(0xffffffffu, v > 0.0f));
  __shared__ unsigned counts[2];
  if (t % 32 == 0) counts[t / 32] = positives;
  __syncthreads();
  if (i < n) y[i] = t == 0 ? s : t == 1 ? static_cast<float>(counts[0] + counts[1]) : 0.0f;
}

// Only the first half of the block reaches the barrier.
__global__ void partial_barrier(const float* x, float* y, int64_t n) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (threadIdx.x < blockDim.x / 2) __syncthreads();
  if (i < n) y[i] = x[i];
}

// The usual early return before a barrier: the threads past n never reach it.
__global__ void exit_before_barrier(const float* x, float* y, int64_t n) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= n) return;
  __syncthreads();
  y[i] = x[i];
}

// A full-mask shuffle that the upper half of each warp never reaches.
__global__ void partial_shuffle(const float* x, float* y, int64_t n) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (threadIdx.x % 32 >= 16) return;
  const float v = i < n ? x[i] : 0.0f;
  const float s = __shfl_down_sync(0xffffffffu, v, 1);
  if (i < n) y[i] = s;
}

}  // namespace

void run_check(const std::string& name, const float* x, float* y, int64_t n) {
  const unsigned blocks = static_cast<unsigned>((n + 63) / 64);
  if (blocks == 0) throw std::invalid_argument("x: expected at least one element");
  if (name == "reverse_chunks" || name == "reverse_chunks_without_barrier") {
    launch(name.c_str(), reverse_chunks, dim3(blocks), dim3(kReverseBlock), kReverseBlock * sizeof(float), x, y, n,
           name == "reverse_chunks");
  } else if (name == "chunk_sums") {
    // The blocks as a 3-D grid (blocks = gx * gy * gz exactly: 1 x 1 x blocks
    // when blocks is odd, else 2 x 1 x blocks/2), to exercise 3-D indices.
    const dim3 grid = blocks % 2 ? dim3(1, 1, blocks) : dim3(2, 1, blocks / 2);
    launch(name.c_str(), chunk_sums, grid, dim3(4, 4, 4), 0, x, y, n);
  } else if (name == "partial_barrier") {
    launch(name.c_str(), partial_barrier, dim3(blocks), dim3(64), 0, x, y, n);
  } else if (name == "exit_before_barrier") {
    launch(name.c_str(), exit_before_barrier, dim3(blocks), dim3(64), 0, x, y, n);
  } else if (name == "partial_shuffle") {
    launch(name.c_str(), partial_shuffle, dim3(blocks), dim3(64), 0, x, y, n);
  } else {
    throw std::invalid_argument("_emulator_check: no check kernel named '" + name + "'");
  }
}

}  // namespace minidnn::cuda::emulated
