// _C bindings of the runtime: threads, CPU path selection, CUDA queries.
#include <omp.h>

#include "bindings/common.h"
#include "cuda/runtime/device.h"
#include "runtime/cpu_features.h"
#include "runtime/threads.h"

namespace minidnn::bindings {

void bind_runtime(py::module_& m) {
  m.def("get_num_threads", &get_num_threads);
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

  py::module_ cuda = m.def_submodule("cuda", "CUDA device queries");
  cuda.def("built", &cuda::built);
  cuda.def("device_count", &cuda::device_count);
  cuda.def("device_name", &cuda::device_name, py::arg("index"));
  cuda.def("status", &cuda::status);
  cuda.def("runtime_version", &cuda::runtime_version);
}

}  // namespace minidnn::bindings
