// The emulated device's scheduler: fibers, rendezvous, launch (design in emu.h).
#include "cuda/emu/emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "runtime/threads.h"

#if defined(__SANITIZE_ADDRESS__)
#define MINIDNN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MINIDNN_EMU_ASAN 1
#endif
#endif

#ifdef MINIDNN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The context switch: saves the callee-saved registers, MXCSR and the x87
// control word on the current stack, stores the stack pointer in *save,
// loads `next` as the stack pointer and restores the same from it. Hand-
// written rather than swapcontext, which makes a system call (the signal
// mask) per switch: a launch switches twice per CUDA thread, and the
// elementwise kernels' tests launch millions.
extern "C" void minidnn_emu_switch(void** save, void* next);
asm(R"(
  .text
  .globl minidnn_emu_switch
  .hidden minidnn_emu_switch
  .type minidnn_emu_switch, @function
minidnn_emu_switch:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
  .size minidnn_emu_switch, .-minidnn_emu_switch
)");

namespace minidnn::emu {
namespace {

// A fiber's stack. Kernels keep a few locals; the emulator's own frames on
// top of them (the switch, the collective) take a few KB. AddressSanitizer's
// redzones grow every frame.
#ifdef MINIDNN_EMU_ASAN
constexpr size_t kStackBytes = 256 * 1024;
#else
constexpr size_t kStackBytes = 64 * 1024;
#endif

enum class State { runnable, at_barrier, at_warp, exited, failed };

struct Fiber {
  void* sp = nullptr;  // the saved stack pointer while the fiber is switched out
  char* stack = nullptr;  // kStackBytes, above a guard page
  State state = State::exited;
  ThreadCoords coords{};
  // The warp collective this fiber waits at, and its result.
  WarpOp op = WarpOp::sync;
  unsigned mask = 0;
  uint64_t value = 0;
  int lane_arg = 0;
  int width = 0;
  uint64_t result = 0;
  std::string error;  // why the fiber failed
#ifdef MINIDNN_EMU_ASAN
  void* fake_stack = nullptr;
#endif
};

// One CPU thread's block runner: its fibers (reused from block to block and
// launch to launch), and the block in progress.
struct Runner {
  std::vector<std::unique_ptr<Fiber>> fibers;
  void* scheduler_sp = nullptr;
  Fiber* current = nullptr;
  const KernelBody* body = nullptr;
  std::vector<unsigned char> shared;  // dynamic shared memory of the block
  bool has_shared = false;
#ifdef MINIDNN_EMU_ASAN
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
  void* scheduler_fake_stack = nullptr;
#endif

  ~Runner() {
    for (auto& f : fibers) munmap(f->stack - page_size(), kStackBytes + page_size());
  }
  static size_t page_size() {
    static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return size;
  }
  Fiber& fiber(size_t i) {
    while (fibers.size() <= i) {
      auto f = std::make_unique<Fiber>();
      const size_t guard = page_size();
      void* mem = mmap(nullptr, kStackBytes + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
      if (mem == MAP_FAILED) throw std::bad_alloc();
      // Stacks grow down: a fiber that overflows its stack faults on the guard page.
      mprotect(mem, guard, PROT_NONE);
      f->stack = static_cast<char*>(mem) + guard;
      fibers.push_back(std::move(f));
    }
    return *fibers[i];
  }
};

thread_local Runner* tls_runner = nullptr;

Runner& runner() {
  // One per CPU thread for the life of the thread; the OpenMP pool keeps its
  // threads, so the stacks are mapped once.
  thread_local Runner r;
  tls_runner = &r;
  return r;
}

std::atomic<int> g_order{static_cast<int>(Order::forward)};
std::atomic<uint64_t> g_seed{0};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Switches from the running fiber back to its block's scheduler; returns
// when the scheduler resumes the fiber. AddressSanitizer's fake stack (for
// detect_stack_use_after_return) is kept with the fiber, also when the fiber
// ends, and serves the fiber's next CUDA thread: creating and destroying one
// per CUDA thread (a large mapping each) made a launch take minutes.
void switch_to_scheduler(Runner& r, Fiber& f) {
#ifdef MINIDNN_EMU_ASAN
  __sanitizer_start_switch_fiber(&f.fake_stack, r.scheduler_stack_bottom, r.scheduler_stack_size);
#endif
  minidnn_emu_switch(&f.sp, r.scheduler_sp);
#ifdef MINIDNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
}

[[noreturn]] void fiber_exit(Runner& r, Fiber& f) {
  switch_to_scheduler(r, f);
  __builtin_unreachable();  // the scheduler never resumes an exited fiber
}

void fiber_main() {
  Runner& r = *tls_runner;
  Fiber& f = *r.current;
#ifdef MINIDNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &r.scheduler_stack_bottom, &r.scheduler_stack_size);
#endif
  r.body->run(r.body->state);
  f.state = State::exited;
  fiber_exit(r, f);
}

// The stack pointer of a fiber that starts in fiber_main: the frame
// minidnn_emu_switch pops (MXCSR and x87 control word as this thread has
// them, six zeroed registers), fiber_main as the return address, 16-byte
// aligned as a call leaves it, and a zero return address above it, where
// a debugger's unwinding stops.
void* initial_stack(char* stack) {
  auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack + kStackBytes) & ~uintptr_t{15});
  uint64_t* sp = top - 2;  // 16-byte aligned: fiber_main is entered with rsp = 8 mod 16
  sp[1] = 0;
  sp[0] = reinterpret_cast<uint64_t>(&fiber_main);
  for (int i = 0; i < 6; ++i) *--sp = 0;
  uint32_t mxcsr = 0;
  uint16_t x87_control = 0;
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(x87_control));
  *--sp = mxcsr | uint64_t{x87_control} << 32;
  return sp;
}

// Runs fiber f until it blocks or ends.
void resume(Runner& r, Fiber& f) {
  r.current = &f;
#ifdef MINIDNN_EMU_ASAN
  __sanitizer_start_switch_fiber(&r.scheduler_fake_stack, f.stack, kStackBytes);
#endif
  minidnn_emu_switch(&r.scheduler_sp, f.sp);
#ifdef MINIDNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(r.scheduler_fake_stack, nullptr, nullptr);
#endif
  r.current = nullptr;
}

[[noreturn]] void fail_in_fiber(const std::string& message) {
  Runner& r = *tls_runner;
  Fiber& f = *r.current;
  f.state = State::failed;
  f.error = message;
  fiber_exit(r, f);
}

// "0-3, 7, 9-31".
std::string lane_list(unsigned lanes) {
  std::string s;
  for (int i = 0; i < kWarpSize; ++i) {
    if (!(lanes & (1u << i))) continue;
    int last = i;
    while (last + 1 < kWarpSize && (lanes & (1u << (last + 1)))) ++last;
    s += (s.empty() ? "" : ", ") + std::to_string(i) + (last > i ? "-" + std::to_string(last) : "");
    i = last;
  }
  return s;
}

std::string hex(unsigned v) {
  char buf[16];
  snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shfl: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::any: return "__any_sync";
    case WarpOp::all: return "__all_sync";
  }
  return "?";
}

const char* state_name(State s) {
  switch (s) {
    case State::runnable: return "running";
    case State::at_barrier: return "waiting at __syncthreads";
    case State::at_warp: return "waiting at a warp collective";
    case State::exited: return "exited";
    case State::failed: return "failed";
  }
  return "?";
}

// The lane whose value lane `lane` of a shuffle receives (itself where CUDA
// says a lane keeps its own value).
int source_lane(const Fiber& f, int lane) {
  const int w = f.width;
  const int segment = lane & ~(w - 1);
  switch (f.op) {
    case WarpOp::shfl: return segment + (f.lane_arg & (w - 1));
    case WarpOp::shfl_up: return lane - segment >= f.lane_arg ? lane - f.lane_arg : lane;
    case WarpOp::shfl_down: return lane - segment + f.lane_arg < w ? lane + f.lane_arg : lane;
    case WarpOp::shfl_xor: {
      const int src = lane ^ f.lane_arg;
      return (src & ~(w - 1)) == segment ? src : lane;
    }
    default: return lane;
  }
}

// One block of a launch on this CPU thread.
class Block {
 public:
  Block(Runner& r, const char* kernel, dim3 grid, dim3 block, uint3 block_idx, uint64_t block_linear)
      : r_(r), kernel_(kernel), threads_(block.x * block.y * block.z) {
    for (unsigned t = 0; t < threads_; ++t) {
      Fiber& f = r.fiber(t);
#ifdef MINIDNN_EMU_ASAN
      // A fiber abandoned mid-kernel (a failed launch) left its frames'
      // redzones poisoned and frames on its fake stack: start it afresh.
      if (f.state != State::exited) {
        __asan_unpoison_memory_region(f.stack, kStackBytes);
        f.fake_stack = nullptr;
      }
#endif
      f.coords = {{t % block.x, t / block.x % block.y, t / (block.x * block.y)}, block_idx, block, grid};
      f.state = State::runnable;
      f.error.clear();
      f.sp = initial_stack(f.stack);
    }
    order_.resize(threads_);
    for (unsigned t = 0; t < threads_; ++t) order_[t] = t;
    mode_ = static_cast<Order>(g_order.load(std::memory_order_relaxed));
    if (mode_ == Order::reverse) std::reverse(order_.begin(), order_.end());
    rng_ = g_seed.load(std::memory_order_relaxed) ^ (block_linear * 0xD1B54A32D192ED03ull);
  }

  // Runs the block to its end; throws KernelError.
  void run() {
    for (;;) {
      if (mode_ == Order::shuffled) shuffle();
      for (unsigned t : order_) {
        Fiber& f = r_.fiber(t);
        if (f.state != State::runnable) continue;
        resume(r_, f);
        if (f.state == State::failed) fail("thread " + describe(f) + ": " + f.error);
      }
      if (release_warps()) continue;
      if (release_barrier()) continue;
      return;
    }
  }

 private:
  Runner& r_;
  const char* kernel_;
  unsigned threads_;
  std::vector<unsigned> order_;
  Order mode_;
  uint64_t rng_;

  void shuffle() {
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[splitmix64(rng_) % i]);
  }

  static std::string describe(const Fiber& f) {
    const uint3 t = f.coords.thread_idx;
    return "(" + std::to_string(t.x) + ", " + std::to_string(t.y) + ", " + std::to_string(t.z) + ")";
  }

  [[noreturn]] void fail(const std::string& what) const {
    const uint3 b = r_.fiber(0).coords.block_idx;
    throw KernelError("CUDA kernel " + std::string(kernel_) + " (emulated device), block (" + std::to_string(b.x) +
                      ", " + std::to_string(b.y) + ", " + std::to_string(b.z) + "): " + what);
  }

  // Completes every warp collective all of whose lanes wait at it; true if any.
  bool release_warps() {
    bool released = false;
    for (unsigned base = 0; base < threads_; base += kWarpSize) {
      const unsigned lanes = std::min<unsigned>(kWarpSize, threads_ - base);
      unsigned done = 0;  // lanes handled in this warp
      for (unsigned lane = 0; lane < lanes; ++lane) {
        Fiber& f = r_.fiber(base + lane);
        if (f.state != State::at_warp || (done & (1u << lane))) continue;
        // Every lane of f's mask must wait at the same collective.
        bool complete = true;
        for (unsigned other = 0; other < lanes && complete; ++other) {
          if (!(f.mask & (1u << other))) continue;
          const Fiber& g = r_.fiber(base + other);
          complete = g.state == State::at_warp && g.op == f.op && g.mask == f.mask && g.width == f.width;
        }
        if (!complete) continue;
        for (unsigned other = 0; other < lanes; ++other) {
          if (!(f.mask & (1u << other))) continue;
          Fiber& g = r_.fiber(base + other);
          g.result = collective_result(base, lanes, g, static_cast<int>(other));
          g.state = State::runnable;
          done |= 1u << other;
        }
        released = true;
      }
    }
    return released;
  }

  uint64_t collective_result(unsigned base, unsigned lanes, const Fiber& f, int lane) const {
    switch (f.op) {
      case WarpOp::sync: return 0;
      case WarpOp::ballot: return votes(base, lanes, f.mask);
      case WarpOp::any: return votes(base, lanes, f.mask) != 0;
      case WarpOp::all: return votes(base, lanes, f.mask) == f.mask;
      default: {
        const int src = source_lane(f, lane);
        if (!(f.mask & (1u << src))) {
          fail("thread " + describe(f) + ": " + op_name(f.op) + " reads lane " + std::to_string(src) +
               ", which is not in its mask 0x" + hex(f.mask));
        }
        return r_.fiber(base + src).value;
      }
    }
  }

  // The lanes of `mask` whose predicate is true.
  unsigned votes(unsigned base, unsigned lanes, unsigned mask) const {
    unsigned v = 0;
    for (unsigned lane = 0; lane < lanes; ++lane) {
      if ((mask & (1u << lane)) && r_.fiber(base + lane).value) v |= 1u << lane;
    }
    return v;
  }

  // Releases __syncthreads when every thread of the block waits there; true
  // if it did. Otherwise, with no fiber runnable, either every thread has
  // exited (the block is done) or the block can never go on: an error.
  bool release_barrier() {
    unsigned at_barrier = 0, exited = 0;
    for (unsigned t = 0; t < threads_; ++t) {
      const State s = r_.fiber(t).state;
      at_barrier += s == State::at_barrier;
      exited += s == State::exited;
    }
    if (exited == threads_) return false;
    if (at_barrier == threads_) {
      for (unsigned t = 0; t < threads_; ++t) r_.fiber(t).state = State::runnable;
      return true;
    }
    // Stuck: name the first warp collective that cannot complete, else the barrier.
    for (unsigned t = 0; t < threads_; ++t) {
      const Fiber& f = r_.fiber(t);
      if (f.state != State::at_warp) continue;
      const unsigned base = t - t % kWarpSize;
      // The lanes of the mask elsewhere, grouped by where they are.
      std::vector<std::pair<std::string, unsigned>> elsewhere;
      for (int lane = 0; lane < kWarpSize; ++lane) {
        if (!(f.mask & (1u << lane))) continue;
        const Fiber& g = r_.fiber(base + lane);
        if (g.state == State::at_warp && g.op == f.op && g.mask == f.mask && g.width == f.width) continue;
        const std::string where = g.state == State::at_warp
                                      ? std::string("waiting at ") + op_name(g.op) + " with mask 0x" + hex(g.mask)
                                      : state_name(g.state);
        auto it = std::find_if(elsewhere.begin(), elsewhere.end(), [&](const auto& e) { return e.first == where; });
        if (it == elsewhere.end()) it = elsewhere.insert(elsewhere.end(), {where, 0u});
        it->second |= 1u << lane;
      }
      std::string missing;
      for (const auto& [where, lanes] : elsewhere) {
        missing += (missing.empty() ? "" : "; ") + std::string("lanes ") + lane_list(lanes) + " " + where;
      }
      fail(std::string(op_name(f.op)) + " with mask 0x" + hex(f.mask) + " reached by only part of warp " +
           std::to_string(t / kWarpSize) + ": " + missing);
    }
    fail("__syncthreads reached by " + std::to_string(at_barrier) + " of the block's " + std::to_string(threads_) +
         " threads (" + std::to_string(exited) + " had exited)");
  }
};

}  // namespace

const ThreadCoords& coords() {
  Runner* r = tls_runner;
  if (r == nullptr || r->current == nullptr) throw KernelError("emu::coords() outside an emulated kernel");
  return r->current->coords;
}

void* dynamic_shared() {
  Runner& r = *tls_runner;
  if (!r.has_shared) fail_in_fiber("uses dynamic shared memory, but the launch asked for none");
  return r.shared.data();
}

void syncthreads() {
  Runner& r = *tls_runner;
  Fiber& f = *r.current;
  f.state = State::at_barrier;
  switch_to_scheduler(r, f);
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int lane_arg, int width) {
  Runner& r = *tls_runner;
  Fiber& f = *r.current;
  const ThreadCoords& c = f.coords;
  const unsigned linear = c.thread_idx.x + c.block_dim.x * (c.thread_idx.y + c.block_dim.y * c.thread_idx.z);
  const unsigned lane = linear % kWarpSize;
  const unsigned threads = c.block_dim.x * c.block_dim.y * c.block_dim.z;
  const unsigned warp_lanes = std::min<unsigned>(kWarpSize, threads - (linear - lane));
  const unsigned existing = warp_lanes == 32 ? 0xffffffffu : (1u << warp_lanes) - 1;
  if (!(mask & (1u << lane))) {
    fail_in_fiber(std::string(op_name(op)) + " with a mask 0x" + hex(mask) + " that lacks the calling lane " +
                  std::to_string(lane));
  }
  if (mask & ~existing) {
    fail_in_fiber(std::string(op_name(op)) + " with mask 0x" + hex(mask) + " naming lanes the block lacks (" +
                  lane_list(mask & ~existing) + ")");
  }
  if (width < 1 || width > kWarpSize || (width & (width - 1))) {
    fail_in_fiber(std::string(op_name(op)) + " with width " + std::to_string(width) + " (expected a power of 2 <= 32)");
  }
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.lane_arg = lane_arg;
  f.width = width;
  f.state = State::at_warp;
  switch_to_scheduler(r, f);
  return f.result;
}

void set_order(Order order, uint64_t seed) {
  g_order.store(static_cast<int>(order), std::memory_order_relaxed);
  g_seed.store(seed, std::memory_order_relaxed);
}
Order order() { return static_cast<Order>(g_order.load(std::memory_order_relaxed)); }
uint64_t order_seed() { return g_seed.load(std::memory_order_relaxed); }

void launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, KernelBody body) {
  const auto bad_shape = [&](const std::string& what) {
    throw KernelError("CUDA kernel " + std::string(name) + " (emulated device): invalid launch: " + what);
  };
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    bad_shape("a grid or block dimension is 0");
  }
  if (threads > kMaxBlockThreads || block.z > 64) bad_shape("more than 1024 threads a block, or block.z > 64");
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) bad_shape("grid beyond (2^31 - 1, 65535, 65535)");
  if (shared_bytes > kMaxDynamicShared) bad_shape(std::to_string(shared_bytes) + " bytes of dynamic shared memory");

  const int64_t blocks = int64_t{grid.x} * grid.y * grid.z;
  // A block of few threads costs about as much as a small CPU kernel.
  const int nthreads = threads_for(blocks * static_cast<int64_t>(threads), 1 << 12);
  std::atomic<bool> failed{false};
  std::mutex error_lock;
  std::string error;
  parallel(nthreads, [&](int t, int nt) {
    if (failed.load(std::memory_order_relaxed)) return;
    try {
      Runner& r = runner();
      r.body = &body;
      r.has_shared = shared_bytes > 0;
      r.shared.assign(shared_bytes, 0);
      const int64_t end = blocks * (t + 1) / nt;
      for (int64_t b = blocks * t / nt; b < end && !failed.load(std::memory_order_relaxed); ++b) {
        const uint3 idx{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                        static_cast<unsigned>(b / (int64_t{grid.x} * grid.y))};
        Block(r, name, grid, block, idx, static_cast<uint64_t>(b)).run();
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_lock);
      if (!failed.exchange(true)) error = e.what();
    }
  });
  if (failed.load()) throw KernelError(error);
}

}  // namespace minidnn::emu
