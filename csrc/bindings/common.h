// Helpers shared by the binding files: the argument access and output
// allocation of every op's one _C entry.
//
// Each public op makes one _C call with its Python arguments as they are.
// The entry takes an argument only when it is exactly what the kernel reads
// (an ndarray of native float32 / int64, C-contiguous and aligned; an exact
// int, float or str). Anything else, and any value a kernel would reject,
// makes the entry return None without touching memory, and the op's Python
// layer then validates (raising the documented TypeError / ValueError /
// IndexError) and calls the entry again with normalized arguments. The
// common call thus costs one C++ function call: no Python-side shape
// arithmetic, no second allocation, no OpenMP region for tiny inputs.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace minidnn::bindings {

namespace py = pybind11;

// NumPy's NPY_MAXDIMS (64 since NumPy 2; 32 before).
constexpr int kMaxDims = 64;

// An ndarray argument the kernels can read as it is.
template <class T>
struct ArrayArg {
  PyObject* obj = nullptr;
  T* data = nullptr;
  int nd = 0;
  const Py_intptr_t* dims = nullptr;
  int64_t size = 0;

  // The shape is exactly (dims[0], ..., dims[n - 1]).
  bool shape_is(int n, const Py_intptr_t* other_dims) const {
    if (nd != n) return false;
    for (int i = 0; i < nd; ++i) {
      if (dims[i] != other_dims[i]) return false;
    }
    return true;
  }
  template <class U>
  bool shape_equals(const ArrayArg<U>& other) const {
    return shape_is(other.nd, other.dims);
  }
};

using FloatArg = ArrayArg<const float>;
using IndexArg = ArrayArg<const int64_t>;

namespace detail {
bool take_array(py::handle h, int type_num, int* nd, const Py_intptr_t** dims, void** data, int64_t* size);
}  // namespace detail

// h as an array of T (NumPy type number `type_num`) the kernels read in
// place, or false.
template <class T>
bool array_arg(py::handle h, int type_num, ArrayArg<const T>* out) {
  void* data = nullptr;
  if (!detail::take_array(h, type_num, &out->nd, &out->dims, &data, &out->size)) return false;
  out->obj = h.ptr();
  out->data = static_cast<const T*>(data);
  return true;
}

inline bool float_arg(py::handle h, FloatArg* out) {
  return array_arg(h, py::detail::npy_api::NPY_FLOAT32_, out);
}

inline bool index_arg(py::handle h, IndexArg* out) { return array_arg(h, py::detail::npy_api::NPY_INT64_, out); }

// None (-> nullopt inside an engaged optional) or a float32 array.
inline bool optional_float_arg(py::handle h, std::optional<FloatArg>* out) {
  if (h.is_none()) {
    out->reset();
    return true;
  }
  FloatArg a;
  if (!float_arg(h, &a)) return false;
  *out = a;
  return true;
}

// An exact Python int that fits int64 (bool, NumPy integers and int
// subclasses take the validating path).
bool int_arg(py::handle h, int64_t* out);
// A Python float (numpy.float64 included), a numpy.float32 or an exact
// Python int (as Python's numbers.Real; bool and other types take the
// validating path).
bool real_arg(py::handle h, double* out);

// Throws the ValueError of a bad argument: "<name>: expected <expected>, got <got>".
[[noreturn]] void fail_argument(const std::string& name, const std::string& expected, const std::string& got);

// An array's shape as Python prints a tuple: "(2, 3)", "(5,)".
template <class T>
std::string shape_string(const ArrayArg<T>& a) {
  std::string s = "(";
  for (int i = 0; i < a.nd; ++i) s += (i ? ", " : "") + std::to_string(a.dims[i]);
  return s + (a.nd == 1 ? ",)" : ")");
}
// An exact Python str equal to one of `choices`; its index in *out.
template <size_t N>
bool choice_arg(py::handle h, const std::array<const char*, N>& choices, int* out) {
  if (!PyUnicode_CheckExact(h.ptr())) return false;
  for (size_t i = 0; i < N; ++i) {
    if (PyUnicode_CompareWithASCIIString(h.ptr(), choices[i]) == 0) {
      *out = static_cast<int>(i);
      return true;
    }
  }
  return false;
}

// A new C-contiguous float32 array of the given shape. Outputs of at least
// the pool threshold come from the Python reuse pool (see _runtime.py);
// inside the tests' poisoned_outputs() every output is filled with the
// poison value first, so an element a kernel skips shows up.
py::object new_float_array(int nd, const Py_intptr_t* dims);
// The value outputs start filled with inside poisoned_outputs(), or nullopt
// (the CUDA arrays of the emulated device honour it too).
std::optional<float> output_poison();
// A 0-d float32 array holding v.
py::object new_float_scalar(float v);
inline float* float_data(const py::object& a) {
  return reinterpret_cast<float*>(py::detail::array_proxy(a.ptr())->data);
}

// Kernels with at least this much work (elements) run without the GIL;
// smaller ones finish in less time than releasing and re-taking it costs.
constexpr int64_t kReleaseGilWork = int64_t{1} << 14;

// Runs kernel(), without the GIL when `work` is large. A function rather than
// a guard object, so that no Python object is touched while the GIL is out.
template <class Kernel>
void run_kernel(int64_t work, Kernel&& kernel) {
  if (work >= kReleaseGilWork) {
    py::gil_scoped_release nogil;
    kernel();
  } else {
    kernel();
  }
}

}  // namespace minidnn::bindings
