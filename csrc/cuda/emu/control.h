// The emulated device's settings and its error, for code that launches
// nothing (the bindings); kernel sources include emu.h, which includes this.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace minidnn::emu {

// A launch that broke a rule of the emulated device; what() names the kernel.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The order of the fibers of a block between two rendezvous (emu.h).
enum class Order { forward, reverse, shuffled };
void set_order(Order order, uint64_t seed);
Order order();
uint64_t order_seed();

}  // namespace minidnn::emu
