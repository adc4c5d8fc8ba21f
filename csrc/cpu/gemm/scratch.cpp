// ISA-independent helpers of the GEMM family: packing scratch and the size
// of a packed B.
#include <cstdlib>
#include <new>

#include "cpu/gemm/gemm.h"

namespace minidnn::cpu {
namespace {

// One growing buffer per slot and thread. Freed at thread exit; OpenMP's
// pool threads live as long as the process, so the buffers are reused.
struct ScratchBuffer {
  float* data = nullptr;
  int64_t floats = 0;
  ~ScratchBuffer() { std::free(data); }
};

constexpr int kSlots = 2;
constexpr size_t kAlign = 64;  // a cache line: panels never straddle one more than needed

}  // namespace

float* gemm_scratch(int slot, int64_t floats) {
  thread_local ScratchBuffer buffers[kSlots];
  ScratchBuffer& buf = buffers[slot];
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

int64_t packed_b_floats(const GemmBlocking& blk, int64_t k, int64_t n) {
  const int64_t n_padded = (n + blk.nr - 1) / blk.nr * blk.nr;
  return k * n_padded;
}

}  // namespace minidnn::cpu
