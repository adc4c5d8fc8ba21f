// The thread count every CPU kernel runs with. Kept here rather than in
// OpenMP's per-thread ICV so that a call from any Python thread sees it, and
// so that it never changes the setting of another library's OpenMP runtime.
#pragma once

#include <cstdint>

namespace minidnn {

int get_num_threads();
void set_num_threads(int n);  // throws std::invalid_argument for n < 1

// Threads worth using for `work` units, given a grain below which a thread
// costs more to wake than it saves.
int threads_for(int64_t work, int64_t grain);

}  // namespace minidnn
