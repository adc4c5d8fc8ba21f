// The emulated CUDA device: the vocabulary of CUDA C++ that the kernels
// under csrc/cuda/kernels use, for the host C++ compiler. The kernel sources
// are written once; nvcc compiles them for the GPU, and every build (with or
// without nvcc) also compiles them against this header, so that the tests run
// the very same kernel code on the CPU (README "The emulated CUDA device").
//
// Design
// - A launch (emu::launch) runs every block of the grid; blocks spread over
//   the CPU threads with minidnn::parallel and run independently. Within
//   a block every CUDA thread is a cooperative fiber with its own small stack
//   and a guard page (a hand-written x86-64 context switch, annotated for
//   AddressSanitizer). A fiber runs
//   until it reaches a barrier, a warp collective, or its end; then the
//   block's scheduler runs the next one. When none can run, the scheduler
//   releases what is complete: a warp collective once every lane of its mask
//   has reached it (the results computed from all lanes' values at once), a
//   __syncthreads once every thread of the block has reached it.
// - Strict: a barrier or warp collective that part of its block or warp can
//   never reach (a thread exited, or waits at another barrier or collective),
//   a mask without the calling lane or naming a lane the block lacks, a
//   shuffle from a lane outside the mask, a bad launch shape: each ends the
//   launch with an emu::KernelError naming the kernel and the block, which
//   the bindings turn into a Python RuntimeError.
// - The order in which the fibers of a block run between two rendezvous is
//   selectable (forward, reverse, or shuffled with a seed; set_order), so a
//   missing barrier or a shared-memory race shows up as results that differ
//   between orders. The tests run each kernel in several orders and require
//   bit-identical results.
// - `__shared__` is `static thread_local`: the fibers of a block all run on
//   one CPU thread, which runs one block at a time, so such a variable is
//   shared by exactly the threads of the running block. Dynamic shared
//   memory (MINIDNN_DYNAMIC_SHARED in kernels/prelude.cuh) is a per-block
//   buffer of the launch's size.
// - Only what the kernels use is here (and a kernel that needs more extends
//   it): 3-D grids and blocks, shared memory, __syncthreads, __syncwarp,
//   __shfl_{,up_,down_,xor_}sync, __ballot_sync / __any_sync / __all_sync, __popc, __frcp_rn,
//   atomicAdd / atomicMax on int and unsigned (sequentially consistent),
//   float2 / float4, and the <cmath> functions (the host's, which round
//   differently from CUDA's: results agree within the tests' tolerances,
//   not bit for bit with a GPU).
// What it cannot tell: timing, coalescing, occupancy, bank conflicts, and the
// real (weak) memory model: every fiber sees every store at once.
#pragma once

#ifdef __CUDACC__
#error "cuda/emu/emu.h is the host emulation of CUDA; nvcc compiles the kernels for the device"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/emu/control.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

namespace minidnn::emu {

constexpr int kWarpSize = 32;
constexpr unsigned kMaxBlockThreads = 1024;
// The default limit of a block's dynamic shared memory on sm_80 / sm_90.
constexpr size_t kMaxDynamicShared = 48 * 1024;

// The coordinates of the CUDA thread the calling fiber runs.
struct ThreadCoords {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};

// The running fiber's coordinates (valid inside a kernel only).
const ThreadCoords& coords();
// The running block's dynamic shared memory (nullptr when the launch asked for none).
void* dynamic_shared();

void syncthreads();

enum class WarpOp { sync, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all };
// The one entry of every warp collective: posts this lane's value, waits for
// the lanes of `mask`, returns this lane's result.
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int lane_arg, int width);

// Called from every fiber concurrently with the others of no other block;
// blocks on other CPU threads may run at the same time.
struct KernelBody {
  const void* state;
  void (*run)(const void* state);
};

// Runs `body` as kernel `name` on grid x block threads with `shared_bytes`
// of dynamic shared memory per block; throws KernelError.
void launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, KernelBody body);

template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp collectives move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <class T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace minidnn::emu

#define threadIdx (::minidnn::emu::coords().thread_idx)
#define blockIdx (::minidnn::emu::coords().block_idx)
#define blockDim (::minidnn::emu::coords().block_dim)
#define gridDim (::minidnn::emu::coords().grid_dim)
constexpr int warpSize = ::minidnn::emu::kWarpSize;

inline void __syncthreads() { ::minidnn::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::minidnn::emu::warp_collective(::minidnn::emu::WarpOp::sync, mask, 0, 0, warpSize);
}

template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
  using namespace ::minidnn::emu;
  return from_bits<T>(warp_collective(WarpOp::shfl, mask, to_bits(v), src_lane, width));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  using namespace ::minidnn::emu;
  return from_bits<T>(warp_collective(WarpOp::shfl_up, mask, to_bits(v), static_cast<int>(delta), width));
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  using namespace ::minidnn::emu;
  return from_bits<T>(warp_collective(WarpOp::shfl_down, mask, to_bits(v), static_cast<int>(delta), width));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  using namespace ::minidnn::emu;
  return from_bits<T>(warp_collective(WarpOp::shfl_xor, mask, to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  using namespace ::minidnn::emu;
  return static_cast<unsigned>(warp_collective(WarpOp::ballot, mask, predicate != 0, 0, warpSize));
}
inline int __any_sync(unsigned mask, int predicate) {
  using namespace ::minidnn::emu;
  return static_cast<int>(warp_collective(WarpOp::any, mask, predicate != 0, 0, warpSize));
}
inline int __all_sync(unsigned mask, int predicate) {
  using namespace ::minidnn::emu;
  return static_cast<int>(warp_collective(WarpOp::all, mask, predicate != 0, 0, warpSize));
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }  // both correctly rounded

// Atomics: blocks run concurrently on CPU threads, so these are real atomics.
template <class T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_integral_v<T>, "the emulator has integer atomicAdd only (the kernels use no float atomics)");
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}
template <class T>
T atomicMax(T* address, T value) {
  static_assert(std::is_integral_v<T>, "atomicMax on integers");
  T old = __atomic_load_n(address, __ATOMIC_SEQ_CST);
  while (old < value && !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
