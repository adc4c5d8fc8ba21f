#include "runtime/scratch.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace minidnn {
namespace {

constexpr int kSlots = 6;
constexpr size_t kAlign = 64;  // a cache line: panels never straddle one more than needed

struct ScratchBuffer {
  float* data = nullptr;
  int64_t floats = 0;
  ~ScratchBuffer() { std::free(data); }
};

// One thread's largest request per slot in the current measurement window
// (`window`, compared with the global one), readable by the thread that
// sums them: relaxed atomics, since the sum is read after the kernels end.
struct RequestRecord {
  std::atomic<int64_t> window{0};
  std::atomic<int64_t> largest[kSlots] = {};
};

struct Registry {
  std::mutex mutex;
  std::vector<RequestRecord*> records;
  std::atomic<int64_t> window{0};
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: threads may outlive static destruction
  return *r;
}

// Registers the calling thread's record for its lifetime.
struct RegisteredRecord {
  RequestRecord record;
  RegisteredRecord() {
    std::lock_guard<std::mutex> lock(registry().mutex);
    registry().records.push_back(&record);
  }
  ~RegisteredRecord() {
    std::lock_guard<std::mutex> lock(registry().mutex);
    auto& v = registry().records;
    v.erase(std::remove(v.begin(), v.end(), &record), v.end());
  }
};

void note_request(int slot, int64_t floats) {
  thread_local RegisteredRecord mine;
  RequestRecord& r = mine.record;
  const int64_t window = registry().window.load(std::memory_order_relaxed);
  if (r.window.load(std::memory_order_relaxed) != window) {
    for (auto& largest : r.largest) largest.store(0, std::memory_order_relaxed);
    r.window.store(window, std::memory_order_relaxed);
  }
  if (floats > r.largest[slot].load(std::memory_order_relaxed)) r.largest[slot].store(floats, std::memory_order_relaxed);
}

}  // namespace

float* thread_scratch(ScratchSlot slot, int64_t floats) {
  thread_local ScratchBuffer buffers[kSlots];
  const int index = static_cast<int>(slot);
  note_request(index, floats);
  ScratchBuffer& buf = buffers[index];
  if (buf.floats < floats) {
    std::free(buf.data);
    buf.data = nullptr;
    buf.floats = 0;
    const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + kAlign - 1) / kAlign * kAlign;
    void* p = std::aligned_alloc(kAlign, bytes);
    if (p == nullptr) throw std::bad_alloc();
    buf.data = static_cast<float*>(p);
    buf.floats = floats;
  }
  return buf.data;
}

void reset_scratch_peak() { registry().window.fetch_add(1, std::memory_order_relaxed); }

int64_t scratch_peak_bytes() {
  Registry& reg = registry();
  const int64_t window = reg.window.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(reg.mutex);
  int64_t floats = 0;
  for (const RequestRecord* r : reg.records) {
    if (r->window.load(std::memory_order_relaxed) != window) continue;
    for (const auto& largest : r->largest) floats += largest.load(std::memory_order_relaxed);
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

}  // namespace minidnn
