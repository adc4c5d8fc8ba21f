// Which CPU code path runs. Detection and selection happen once, at import;
// the op families read the selection through active_isa().
#pragma once

#include <string>

namespace minidnn {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);

// True when the CPU and the OS (saved register state) support the path:
// avx2 means AVX2 + FMA; avx512 means AVX-512 F, BW, VL and DQ.
bool cpu_supports(Isa isa);

// The best path this CPU supports.
Isa best_isa();

// The path kernels dispatch to. Starts as MINIDNN_ISA when the CPU supports
// it, otherwise best_isa(); see isa_selection_warning().
Isa active_isa();

// Forces a path (the tests use this to cover every path in one process).
// Throws std::invalid_argument for an unknown name or a path the CPU lacks.
void set_active_isa(const std::string& name);

// Empty, or why MINIDNN_ISA was not honoured; Python turns it into a warning.
const std::string& isa_selection_warning();

}  // namespace minidnn
