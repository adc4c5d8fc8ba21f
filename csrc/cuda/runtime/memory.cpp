// The caching allocator over both devices, and the emulated device's memory
// (host memory). See memory.h.
#include "cuda/runtime/memory.h"

#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "cuda/kernels/kernels.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MINIDNN_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MINIDNN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MINIDNN_POISON(p, n) ((void)(p), (void)(n))
#define MINIDNN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace minidnn::cuda {
namespace {

constexpr size_t kAlignment = 256;  // cudaMalloc's alignment, kept on the emulator

void* host_allocate(size_t bytes) {
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void host_copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

// Requests round up to 512 bytes, and from 1 MiB on to whole MiB, so that
// blocks of nearby sizes share a cache bucket.
size_t rounded(size_t bytes) {
  const size_t unit = bytes < (size_t{1} << 20) ? 512 : size_t{1} << 20;
  return (bytes + unit - 1) / unit * unit;
}

struct Cache {
  std::mutex lock;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // by rounded size
  size_t bytes = 0;
};

Cache& cache(Device d) {
  static Cache caches[2];
  return caches[static_cast<int>(d)];
}

// The emulated device's blocks held by arrays: start -> bytes asked for.
struct InUse {
  std::mutex lock;
  std::map<uintptr_t, size_t> blocks;
};

InUse& emulated_in_use() {
  static InUse in_use;
  return in_use;
}

void* track_emulated(void* p, size_t bytes) {
  InUse& u = emulated_in_use();
  std::lock_guard<std::mutex> guard(u.lock);
  u.blocks[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

}  // namespace

const char* device_label(Device d) { return d == Device::gpu ? "cuda" : "emulated"; }

const MemoryBackend& emulated_memory() {
  static const MemoryBackend backend{host_allocate, std::free, host_copy, host_copy, host_copy};
  return backend;
}

const MemoryBackend& memory(Device d) {
  if (d == Device::emulated) return emulated_memory();
  const MemoryBackend* gpu = gpu_memory();
  if (gpu == nullptr) throw std::runtime_error("this build of minidnn has no CUDA backend");
  return *gpu;
}

const DeviceKernels& kernels(Device d) {
  if (d == Device::emulated) return emulated::kernels();
  const DeviceKernels* gpu = gpu_kernels();
  if (gpu == nullptr) throw std::runtime_error("this build of minidnn has no CUDA backend");
  return *gpu;
}

void* allocate(Device d, size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = rounded(bytes);
  Cache& c = cache(d);
  {
    std::lock_guard<std::mutex> guard(c.lock);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= size;
      if (d == Device::emulated) {
        MINIDNN_UNPOISON(p, bytes);
        return track_emulated(p, bytes);
      }
      return p;
    }
  }
  void* p = memory(d).allocate(size);
  if (d == Device::emulated) {
    // The rounding slack stays poisoned: a read past the array is a report.
    MINIDNN_POISON(static_cast<char*>(p) + bytes, size - bytes);
    return track_emulated(p, bytes);
  }
  return p;
}

void release(Device d, void* p, size_t bytes) {
  if (p == nullptr) return;
  const size_t size = rounded(bytes);
  if (d == Device::emulated) {
    MINIDNN_POISON(p, size);
    InUse& u = emulated_in_use();
    std::lock_guard<std::mutex> guard(u.lock);
    u.blocks.erase(reinterpret_cast<uintptr_t>(p));
  }
  Cache& c = cache(d);
  std::lock_guard<std::mutex> guard(c.lock);
  c.free_blocks[size].push_back(p);
  c.bytes += size;
}

void empty_cache(Device d) {
  Cache& c = cache(d);
  std::lock_guard<std::mutex> guard(c.lock);
  for (auto& [size, blocks] : c.free_blocks) {
    for (void* p : blocks) {
      if (d == Device::emulated) MINIDNN_UNPOISON(p, size);
      memory(d).release(p);
    }
  }
  c.free_blocks.clear();
  c.bytes = 0;
}

size_t cached_bytes(Device d) {
  Cache& c = cache(d);
  std::lock_guard<std::mutex> guard(c.lock);
  return c.bytes;
}

bool emulated_range_in_use(const void* p, size_t bytes) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(p);
  InUse& u = emulated_in_use();
  std::lock_guard<std::mutex> guard(u.lock);
  auto it = u.blocks.upper_bound(start);  // the first block starting after p
  if (it == u.blocks.begin()) return false;
  --it;
  return start - it->first <= it->second && bytes <= it->second - (start - it->first);
}

}  // namespace minidnn::cuda
