// The thread count every CPU kernel runs with, and the one way kernels go
// parallel. The count is kept here rather than in OpenMP's per-thread ICV so
// that a call from any Python thread sees it, and so that it never changes
// the setting of another library's OpenMP runtime.
#pragma once

#include <omp.h>

#include <cstdint>

namespace minidnn {

// The count set, or 1 on a thread inside a OneThreadScope.
int get_num_threads();
void set_num_threads(int n);  // throws std::invalid_argument for n < 1

// While one lives, get_num_threads() (and so threads_for) gives 1 on the
// thread that made it: for work a team already splits into independent
// pieces, one a thread (the two directions of a bidirectional recurrent
// layer), whose kernels then run on that thread without entering OpenMP.
// Their bodies then run inside the team's region, so their barriers must
// be guarded with nt > 1 (see parallel). Scopes nest.
class OneThreadScope {
 public:
  OneThreadScope();
  ~OneThreadScope();
  OneThreadScope(const OneThreadScope&) = delete;
  OneThreadScope& operator=(const OneThreadScope&) = delete;

 private:
  bool previous_;
};

// Threads worth using for `work` units, given a grain below which a thread
// costs more to wake than it saves.
int threads_for(int64_t work, int64_t grain);

// Runs body(t, nt) once on each of nt threads, t in [0, nt); nt <= threads
// (the OpenMP runtime may grant fewer). With threads <= 1 the body runs on
// the calling thread as body(0, 1) without entering the OpenMP runtime:
// `#pragma omp parallel if (false)` still calls into libgomp and builds a
// team, which costs more than a kernel on a few hundred floats. So with one
// thread a barrier in the body binds to the caller's region if there is one
// (a GEMM called by each thread of a convolution's team), which the other
// threads never reach: guard such barriers with nt > 1.
//
// Only templates here: kernel bodies are lambdas of anonymous-namespace
// code, so every instantiation is local to its translation unit and
// compiled with that unit's ISA flags (simd/README.md).
template <class Body>
void parallel(int threads, const Body& body) {
  if (threads <= 1) {
    body(0, 1);
    return;
  }
#pragma omp parallel num_threads(threads)
  body(omp_get_thread_num(), omp_get_num_threads());
}

// body(i) for every i in [0, n), each thread taking one contiguous share as
// OpenMP's schedule(static) would (see parallel).
template <class Body>
void parallel_for(int threads, int64_t n, const Body& body) {
  parallel(threads, [&](int t, int nt) {
    const int64_t end = n * (t + 1) / nt;
    for (int64_t i = n * t / nt; i < end; ++i) body(i);
  });
}

}  // namespace minidnn
