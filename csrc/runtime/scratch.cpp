#include "runtime/scratch.h"

#include <cstdlib>
#include <new>

namespace minidnn {
namespace {

struct ScratchBuffer {
  float* data = nullptr;
  int64_t floats = 0;
  ~ScratchBuffer() { std::free(data); }
};

constexpr int kSlots = 4;
constexpr size_t kAlign = 64;  // a cache line: panels never straddle one more than needed

}  // namespace

float* thread_scratch(ScratchSlot slot, int64_t floats) {
  thread_local ScratchBuffer buffers[kSlots];
  ScratchBuffer& buf = buffers[static_cast<int>(slot)];
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

}  // namespace minidnn
