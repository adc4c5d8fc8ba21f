// The same kernels compiled by the host compiler for the emulated device
// (see prelude.cuh and cuda/emu/emu.h).
#define MINIDNN_CUDA_TARGET emulated
#include "cuda/kernels/all.cuh"
