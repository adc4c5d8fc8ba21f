// _C bindings of the runtime: threads, CPU path selection (the CUDA side: cuda.cpp).
#include <omp.h>

#include <cstring>
#include <stdexcept>

#include <pybind11/stl.h>

#include "bindings/common.h"
#include "runtime/cpu_features.h"
#include "runtime/scratch.h"
#include "runtime/threads.h"

namespace minidnn::bindings {
namespace {

// The benchmark's copy-bandwidth probe: every thread copies 256 KB blocks
// with memcpy, small enough that glibc uses cached stores (a single large
// memcpy switches to non-temporal stores, which run at about half speed on
// our machines and would understate the ceiling).
void copy_probe(py::handle src_arg, py::handle dst_arg) {
  FloatArg src, dst;
  if (!float_arg(src_arg, &src) || !float_arg(dst_arg, &dst) || dst.size != src.size ||
      (py::detail::array_proxy(dst.obj)->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) == 0) {
    throw std::invalid_argument("copy_probe: expected two writable C-contiguous float32 arrays of one size");
  }
  const int64_t n = src.size;
  const float* s = src.data;
  float* d = const_cast<float*>(dst.data);
  constexpr int64_t kBlock = int64_t{1} << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int threads = get_num_threads();
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kBlock;
    const int64_t len = n - begin < kBlock ? n - begin : kBlock;
    std::memcpy(d + begin, s + begin, static_cast<size_t>(len) * sizeof(float));
  }
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("get_num_threads", &get_num_threads);
  // The benchmark's peak extra memory of a case (runtime/scratch.h).
  m.def("reset_scratch_peak", &reset_scratch_peak);
  m.def("scratch_peak_bytes", &scratch_peak_bytes);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("set_isa", &set_active_isa, py::arg("name"));
  m.def("isa_warning", [] { return isa_selection_warning(); });
  m.def("cpu_supports", [] {
    py::dict d;
    for (Isa isa : {Isa::avx512, Isa::avx2, Isa::scalar}) d[isa_name(isa)] = cpu_supports(isa);
    return d;
  });
  m.def("openmp_version", [] { return static_cast<int>(_OPENMP); });
  m.def("copy_probe", &copy_probe, py::arg("src"), py::arg("dst"));
}

}  // namespace minidnn::bindings
