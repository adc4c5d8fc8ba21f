// The cache line in floats: the step of the software prefetch loops, one
// prefetch per line (64 bytes on every x86 CPU the wheels run on).
// Anonymous namespace as README.md says.
#pragma once

#include <cstdint>

namespace {

constexpr int64_t kCacheLineFloats = 16;

}  // namespace
