// Device memory: the two devices an array can live on, and one caching
// allocator over both. Freed blocks are kept by rounded size for reuse
// (cudaMalloc and cudaFree synchronize the device and cost far more than a
// small kernel); empty_cache() returns them. Never managed memory.
//
// The emulated device's memory is host memory behind the same interface; a
// cached block is poisoned for AddressSanitizer, and a reused one unpoisoned
// only up to the bytes asked for, so a kernel that reads past its array or
// into a freed one is a sanitizer report.
#pragma once

#include <cstddef>
#include <string>

namespace minidnn::cuda {

enum class Device { emulated = 0, gpu = 1 };

const char* device_label(Device d);  // "emulated" / "cuda"

// How one device allocates and copies; the cache sits above it.
struct MemoryBackend {
  void* (*allocate)(size_t bytes);  // throws std::bad_alloc / std::runtime_error
  void (*release)(void* p);
  void (*to_device)(void* dst, const void* src, size_t bytes);
  void (*to_host)(void* dst, const void* src, size_t bytes);
  void (*device_to_device)(void* dst, const void* src, size_t bytes);
};

const MemoryBackend& emulated_memory();
// nullptr in a build without the CUDA backend (device_unavailable.cpp).
const MemoryBackend* gpu_memory();
// The backend of d; std::runtime_error when d is the GPU and this build has none.
const MemoryBackend& memory(Device d);

// A block of at least `bytes` (nullptr for 0 bytes), 256-byte aligned.
void* allocate(Device d, size_t bytes);
// Returns a block of allocate(d, bytes) to the cache.
void release(Device d, void* p, size_t bytes);
// Frees every cached block of d.
void empty_cache(Device d);
size_t cached_bytes(Device d);
// True when [p, p + bytes) lies inside one block of the emulated device's
// that an array holds now (how the emulated device tells its memory from
// host memory, as cudaPointerGetAttributes does on the GPU).
bool emulated_range_in_use(const void* p, size_t bytes);

}  // namespace minidnn::cuda
