// Test-only kernels of the emulated device (tests/test_cuda_emulated.py):
// correct ones that use every rendezvous the emulator offers, and broken
// ones it must catch. Compiled for the emulator only (a partial barrier
// would hang a GPU), and reachable only through the private
// _C.cuda._emulator_check.
#pragma once

#include <cstdint>
#include <string>

namespace minidnn::cuda::emulated {

// Runs check kernel `name` over x[0, n) into y (n floats too, see the .cpp);
// std::invalid_argument for an unknown name, emu::KernelError from the kernel.
void run_check(const std::string& name, const float* x, float* y, int64_t n);

}  // namespace minidnn::cuda::emulated
