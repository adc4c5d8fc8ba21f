#include "runtime/threads.h"

#include <omp.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace minidnn {
namespace {

std::atomic<int>& thread_count() {
  // omp_get_max_threads() already honours OMP_NUM_THREADS.
  static std::atomic<int> n{omp_get_max_threads() > 0 ? omp_get_max_threads() : 1};
  return n;
}

thread_local bool one_thread = false;

}  // namespace

int get_num_threads() { return one_thread ? 1 : thread_count().load(std::memory_order_relaxed); }

OneThreadScope::OneThreadScope() : previous_(one_thread) { one_thread = true; }

OneThreadScope::~OneThreadScope() { one_thread = previous_; }

void set_num_threads(int n) {
  if (n < 1) {
    throw std::invalid_argument("num_threads: expected an integer >= 1, got " + std::to_string(n));
  }
  thread_count().store(n, std::memory_order_relaxed);
}

int threads_for(int64_t work, int64_t grain) {
  const int n = get_num_threads();
  if (grain <= 0 || work <= grain) return 1;
  const int64_t useful = work / grain;
  return useful < n ? static_cast<int>(useful) : n;
}

}  // namespace minidnn
