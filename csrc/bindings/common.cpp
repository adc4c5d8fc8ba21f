// Argument access and output allocation shared by the binding files (see
// common.h), and their two settings: the poison value and the pool.
#include "bindings/common.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <climits>
#include <stdexcept>

namespace minidnn::bindings {
namespace {

namespace npy = py::detail;

struct OutputSettings {
  bool poison = false;
  float poison_value = 0.0f;
  // _runtime's pooled allocator: shape tuple -> float32 array. Held for the
  // life of the process (no decref at exit, when Python may be gone).
  PyObject* pooled_empty = nullptr;
  int64_t pool_min_bytes = INT64_MAX;
};

OutputSettings& output_settings() {
  static OutputSettings settings;
  return settings;
}

}  // namespace

namespace detail {

bool take_array(py::handle h, int type_num, int* nd, const Py_intptr_t** dims, void** data, int64_t* size) {
  const auto& api = npy::npy_api::get();
  if (!api.PyArray_Check_(h.ptr())) return false;
  const auto* a = npy::array_proxy(h.ptr());
  const auto* descr = npy::array_descriptor_proxy(a->descr);
  // Native byte order only: '>f4' is float32 too, but not what the kernels read.
  if (descr->type_num != type_num || descr->byteorder == '>') return false;
  constexpr int kNeeded = npy::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | npy::npy_api::NPY_ARRAY_ALIGNED_;
  if ((a->flags & kNeeded) != kNeeded) return false;
  int64_t n = 1;
  for (int i = 0; i < a->nd; ++i) n *= a->dimensions[i];  // NumPy guarantees it fits
  *nd = a->nd;
  *dims = a->dimensions;
  *data = a->data;  // char*: the caller casts to the element type checked above
  *size = n;
  return true;
}

}  // namespace detail

void fail_argument(const std::string& name, const std::string& expected, const std::string& got) {
  throw std::invalid_argument(name + ": expected " + expected + ", got " + got);
}

bool int_arg(py::handle h, int64_t* out) {
  if (!PyLong_CheckExact(h.ptr())) return false;
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
  if (overflow != 0) return false;
  *out = v;
  return true;
}

namespace {

// NumPy's float32 scalar type, looked up once (NumPy is loaded by then).
PyTypeObject* numpy_float32_type() {
  static PyTypeObject* const type =
      reinterpret_cast<PyTypeObject*>(py::object(py::module_::import("numpy").attr("float32")).release().ptr());
  return type;
}

}  // namespace

bool real_arg(py::handle h, double* out) {
  // float and its subclasses (numpy.float64 among them), and numpy.float32:
  // the scalars a user passes as an op's coefficient or a loss's gradient.
  if (PyFloat_Check(h.ptr())) {
    *out = PyFloat_AS_DOUBLE(h.ptr());
    return true;
  }
  if (Py_TYPE(h.ptr()) == numpy_float32_type()) {
    *out = PyFloat_AsDouble(h.ptr());
    return true;
  }
  if (!PyLong_CheckExact(h.ptr())) return false;
  *out = PyLong_AsDouble(h.ptr());
  if (*out == -1.0 && PyErr_Occurred()) {  // too large for a double: the validating path says so
    PyErr_Clear();
    return false;
  }
  return true;
}

py::object new_float_array(int nd, const Py_intptr_t* dims) {
  OutputSettings& settings = output_settings();
  int64_t bytes = sizeof(float);
  for (int i = 0; i < nd; ++i) bytes *= dims[i];
  py::object out;
  if (bytes >= settings.pool_min_bytes && settings.pooled_empty != nullptr) {
    py::tuple shape(nd);
    for (int i = 0; i < nd; ++i) shape[i] = py::int_(static_cast<Py_ssize_t>(dims[i]));
    out = py::reinterpret_borrow<py::object>(settings.pooled_empty)(shape);
  } else {
    const auto& api = npy::npy_api::get();
    // PyArray_NewFromDescr steals the descriptor reference.
    PyObject* a = api.PyArray_NewFromDescr_(api.PyArray_Type_, api.PyArray_DescrFromType_(npy::npy_api::NPY_FLOAT32_),
                                            nd, dims, nullptr, nullptr, 0, nullptr);
    if (a == nullptr) throw py::error_already_set();
    out = py::reinterpret_steal<py::object>(a);
  }
  if (settings.poison) std::fill_n(float_data(out), bytes / sizeof(float), settings.poison_value);
  return out;
}

std::optional<float> output_poison() {
  const OutputSettings& settings = output_settings();
  return settings.poison ? std::optional<float>(settings.poison_value) : std::nullopt;
}

py::object new_float_scalar(float v) {
  py::object out = new_float_array(0, nullptr);
  *float_data(out) = v;
  return out;
}

void bind_output_settings(py::module_& m) {
  m.def(
      "set_output_poison",
      [](std::optional<float> value) {
        output_settings().poison = value.has_value();
        output_settings().poison_value = value.value_or(0.0f);
      },
      py::arg("value"));
  m.def(
      "set_output_pool",
      [](py::object pooled_empty, int64_t min_bytes) {
        if (!PyCallable_Check(pooled_empty.ptr())) throw std::invalid_argument("pooled_empty: expected a callable");
        Py_XDECREF(output_settings().pooled_empty);
        output_settings().pooled_empty = pooled_empty.release().ptr();
        output_settings().pool_min_bytes = min_bytes;
      },
      py::arg("pooled_empty"), py::arg("min_bytes"));
}

}  // namespace minidnn::bindings
