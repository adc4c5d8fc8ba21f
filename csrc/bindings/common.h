// Helpers shared by the binding files. The Python layer validates every
// argument before it calls into _C; these checks are the last line that
// keeps a malformed call from reading or writing out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace minidnn::bindings {

namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style>;

template <class T>
const T* input(const Array<T>& a, int64_t expected, const char* name) {
  if (a.size() != expected) {
    throw std::invalid_argument(std::string(name) + ": expected " + std::to_string(expected) +
                                " elements, got " + std::to_string(a.size()));
  }
  return a.data();
}

template <class T>
const T* optional_input(const std::optional<Array<T>>& a, int64_t expected, const char* name) {
  return a ? input(*a, expected, name) : nullptr;
}

template <class T>
T* output(Array<T>& a, int64_t expected, const char* name) {
  input(a, expected, name);
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + ": output array is read-only");
  return a.mutable_data();
}

inline int64_t checked_product(int64_t a, int64_t b, int64_t c) {
  if (a < 0 || b < 0 || c < 0) throw std::invalid_argument("shape: negative extent");
  int64_t ab = 0, abc = 0;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) {
    throw std::invalid_argument("shape: element count overflows int64");
  }
  return abc;
}

}  // namespace minidnn::bindings
