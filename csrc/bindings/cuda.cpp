// _C.cuda: device queries, minidnn.cuda.Array (a contiguous buffer of the
// caching allocator on the GPU or the emulated device), the emulator's
// settings, and the CUDA entries of the ops. An op's entry runs the kernel
// table of its arrays' device (cuda/kernels/kernels.h); the Python layer has
// already checked types, shapes and that every array lives on one device,
// and the checks here only keep a wrong call from touching memory.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "cuda/emu/checks.h"
#include "cuda/emu/control.h"
#include "cuda/kernels/kernels.h"
#include "cuda/runtime/device.h"
#include "cuda/runtime/dlpack.h"
#include "cuda/runtime/memory.h"

namespace minidnn::bindings {
namespace {

using cuda::Device;

// A block of the caching allocator, returned to it with the last array on it.
struct Buffer {
  Device device;
  void* data;
  size_t bytes;
  Buffer(Device d, size_t n) : device(d), data(cuda::allocate(d, n)), bytes(n) {}
  ~Buffer() { cuda::release(device, data, bytes); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

enum class DType { float32, int64 };

size_t itemsize(DType t) { return t == DType::float32 ? 4 : 8; }
int npy_type(DType t) {
  return t == DType::float32 ? py::detail::npy_api::NPY_FLOAT32_ : py::detail::npy_api::NPY_INT64_;
}

// minidnn.cuda.Array: C-contiguous, float32 or int64. Its memory is a
// Buffer of its own, or another library's array it views (made by
// view_of / from_dlpack for an op's inputs); `storage` keeps either alive.
struct DeviceArray {
  std::shared_ptr<void> storage;
  void* address = nullptr;
  Device where = Device::emulated;
  std::vector<Py_intptr_t> shape;
  DType dtype = DType::float32;
  int64_t size = 0;

  DeviceArray(Device d, DType t, std::vector<Py_intptr_t> dims) : where(d), shape(std::move(dims)), dtype(t) {
    size = 1;
    for (Py_intptr_t n : shape) size *= n;
    auto buffer = std::make_shared<Buffer>(d, static_cast<size_t>(size) * itemsize(t));
    address = buffer->data;
    storage = std::move(buffer);
  }
  // A view of `data`, which `keeper` keeps alive (shape already checked).
  DeviceArray(Device d, DType t, std::vector<Py_intptr_t> dims, int64_t n, void* data, std::shared_ptr<void> keeper)
      : storage(std::move(keeper)), address(data), where(d), shape(std::move(dims)), dtype(t), size(n) {}
  Device device() const { return where; }
  size_t nbytes() const { return static_cast<size_t>(size) * itemsize(dtype); }
  void* data() const { return address; }
  float* floats() const { return static_cast<float*>(address); }
};

// A new float32 array on d of the given shape; inside the tests'
// poisoned_outputs() an emulated one starts filled with the poison value.
DeviceArray new_float_array_on(Device d, const std::vector<Py_intptr_t>& shape) {
  DeviceArray out(d, DType::float32, shape);
  const std::optional<float> poison = output_poison();
  if (poison && d == Device::emulated) std::fill_n(out.floats(), out.size, *poison);
  return out;
}

py::tuple shape_tuple(const DeviceArray& a) {
  py::tuple t(a.shape.size());
  for (size_t i = 0; i < a.shape.size(); ++i) t[i] = py::int_(static_cast<Py_ssize_t>(a.shape[i]));
  return t;
}

std::string shape_text(const DeviceArray& a) {
  return py::str(shape_tuple(a)).cast<std::string>();
}

Device parse_device(const std::string& name) {
  if (name == "emulated") return Device::emulated;
  if (name == "cuda") return Device::gpu;
  throw std::invalid_argument("device: expected 'cuda' or 'emulated', got '" + name + "'");
}

DeviceArray to_device(py::handle host, const std::string& device_name) {
  const Device d = parse_device(device_name);
  int nd = 0;
  const Py_intptr_t* dims = nullptr;
  void* data = nullptr;
  int64_t size = 0;
  DType t = DType::float32;
  if (!detail::take_array(host, npy_type(DType::float32), &nd, &dims, &data, &size)) {
    t = DType::int64;
    if (!detail::take_array(host, npy_type(DType::int64), &nd, &dims, &data, &size)) {
      throw py::type_error("to_device: expected a C-contiguous, aligned ndarray of float32 or int64");
    }
  }
  DeviceArray out(d, t, std::vector<Py_intptr_t>(dims, dims + nd));
  if (out.nbytes() > 0) {
    const cuda::MemoryBackend& memory = cuda::memory(d);
    py::gil_scoped_release nogil;
    memory.to_device(out.data(), data, out.nbytes());
  }
  return out;
}

py::object to_host(const DeviceArray& a) {
  const auto& api = py::detail::npy_api::get();
  PyObject* raw = api.PyArray_NewFromDescr_(api.PyArray_Type_, api.PyArray_DescrFromType_(npy_type(a.dtype)),
                                            static_cast<int>(a.shape.size()), a.shape.data(), nullptr, nullptr, 0,
                                            nullptr);
  if (raw == nullptr) throw py::error_already_set();
  py::object out = py::reinterpret_steal<py::object>(raw);
  if (a.nbytes() > 0) {
    void* dst = py::detail::array_proxy(raw)->data;
    const cuda::MemoryBackend& memory = cuda::memory(a.device());
    py::gil_scoped_release nogil;
    memory.to_host(dst, a.data(), a.nbytes());
  }
  return out;
}

// ---- Interop: other libraries' arrays in, ours out (README "Interop") ----
//
// minidnn's kernels run on the legacy default stream (1 in the protocols'
// numbering). An input view synchronizes with its producer's stream by
// events, never by blocking the host.

constexpr uintptr_t kLegacyStream = 1;
constexpr uintptr_t kPerThreadStream = 2;

std::string hex_address(const void* p) {
  char text[2 + 2 * sizeof(void*) + 1];
  std::snprintf(text, sizeof text, "0x%zx", reinterpret_cast<size_t>(p));
  return text;
}

// The producer of a view taken through __cuda_array_interface__, held while
// the view lives. When it named a stream other than the default ones, that
// stream then waits for the kernels queued meanwhile on the default stream,
// so that the producer neither overwrites nor reuses the memory before they
// have read it.
struct Producer {
  py::object object;
  std::optional<uintptr_t> stream;
  ~Producer() {
    if (stream) {
      // A failure here is a sticky device error, which the next CUDA call
      // reports; a destructor cannot raise it.
      try {
        cuda::stream_wait(*stream, kLegacyStream);
      } catch (const std::exception&) {
      }
    }
    py::gil_scoped_acquire gil;
    object = py::object();
  }
};

DType parse_dtype(const std::string& name, const std::string& dtype) {
  if (dtype == "float32") return DType::float32;
  if (dtype == "int64") return DType::int64;
  throw py::type_error(name + ": expected dtype float32 or int64, got " + dtype);
}

// The shape as the kernels take it: every extent >= 0, the element count
// within int64 and the byte count within size_t.
std::vector<Py_intptr_t> checked_shape(const std::string& name, const std::vector<int64_t>& dims, DType t,
                                       int64_t* count) {
  int64_t n = 1;
  bool overflow = false;
  for (int64_t d : dims) {
    if (d < 0) fail_argument(name, "a shape of extents >= 0", "extent " + std::to_string(d));
    overflow = overflow || __builtin_mul_overflow(n, d, &n);
  }
  if (overflow || n > static_cast<int64_t>(SIZE_MAX / itemsize(t))) {
    fail_argument(name, "a shape whose size fits in memory", "a size past 2^63 bytes");
  }
  *count = n;
  return std::vector<Py_intptr_t>(dims.begin(), dims.end());
}

// Kernels read inputs as dense C-order arrays: strides (in bytes) must be
// those of one, except along extents of 1, which no index steps over.
void check_c_contiguous(const std::string& name, const std::vector<int64_t>& dims,
                        const std::vector<int64_t>& byte_strides, DType t, int64_t count) {
  if (byte_strides.size() != dims.size()) {
    fail_argument(name, std::to_string(dims.size()) + " strides (one per axis)", std::to_string(byte_strides.size()));
  }
  if (count == 0) return;
  int64_t expected = static_cast<int64_t>(itemsize(t));
  std::string given = "(";
  bool contiguous = true;
  for (size_t i = dims.size(); i-- > 0;) {
    if (dims[i] != 1 && byte_strides[i] != expected) contiguous = false;
    expected *= dims[i];
  }
  for (size_t i = 0; i < byte_strides.size(); ++i) given += (i ? ", " : "") + std::to_string(byte_strides[i]);
  if (!contiguous) {
    fail_argument(name, "a C-contiguous array (minidnn does not copy device arrays; make it contiguous first)",
                  "byte strides " + given + (byte_strides.size() == 1 ? ",)" : ")"));
  }
}

// p must point at `bytes` of d's memory (the current GPU's, or an emulated
// array's), aligned for its elements: a host pointer or another GPU's would
// be read by the kernels as if it were theirs.
void check_device_memory(const std::string& name, Device d, const void* p, size_t bytes, DType t) {
  if (bytes == 0) return;
  if (p == nullptr) fail_argument(name, "a device address", "a null pointer");
  if (reinterpret_cast<uintptr_t>(p) % itemsize(t) != 0) {
    fail_argument(name, "data aligned to " + std::to_string(itemsize(t)) + " bytes", "address " + hex_address(p));
  }
  if (d == Device::emulated) {
    if (!cuda::emulated_range_in_use(p, bytes)) {
      fail_argument(name, "memory of the emulated device",
                    "address " + hex_address(p) + ", outside its arrays (host memory?)");
    }
    return;
  }
  const int current = cuda::current_device();
  const int owner = cuda::device_of_pointer(p);
  if (owner != current) {
    fail_argument(name, "memory on CUDA device " + std::to_string(current) + " (the current device)",
                  owner < 0 ? std::string("host memory") : "memory on CUDA device " + std::to_string(owner));
  }
}

// A view of the array another library describes by __cuda_array_interface__
// (parsed by _validate: the address, shape, dtype, byte strides or None,
// and the stream, None when it asks for no synchronization).
DeviceArray view_of(py::object producer, uintptr_t address, const std::vector<int64_t>& dims,
                    const std::string& dtype, std::optional<std::vector<int64_t>> byte_strides,
                    std::optional<uintptr_t> stream, const std::string& name, const std::string& device_name) {
  const Device d = parse_device(device_name);
  const DType t = parse_dtype(name, dtype);
  int64_t count = 0;
  std::vector<Py_intptr_t> shape = checked_shape(name, dims, t, &count);
  if (byte_strides) check_c_contiguous(name, dims, *byte_strides, t, count);
  void* data = reinterpret_cast<void*>(address);
  check_device_memory(name, d, data, static_cast<size_t>(count) * itemsize(t), t);
  auto keeper = std::make_shared<Producer>();
  keeper->object = std::move(producer);
  // The legacy default stream is ours, and the per-thread one synchronizes
  // with it: only another stream needs the events, in both directions.
  if (d == Device::gpu && stream && *stream != kLegacyStream && *stream != kPerThreadStream) {
    cuda::stream_wait(kLegacyStream, *stream);
    keeper->stream = stream;
  }
  return DeviceArray(d, t, std::move(shape), count, data, std::move(keeper));
}

// A view of the array in a "dltensor" capsule (from the producer's
// __dlpack__(stream=1): the producer has made it ready on our stream).
// The view owns the DLManagedTensor and calls its deleter when it goes.
DeviceArray from_dlpack(py::handle capsule, const std::string& name, const std::string& device_name) {
  using namespace cuda::dlpack;
  const Device d = parse_device(device_name);
  if (!PyCapsule_IsValid(capsule.ptr(), "dltensor")) {
    const char* given = PyCapsule_CheckExact(capsule.ptr()) ? PyCapsule_GetName(capsule.ptr()) : nullptr;
    PyErr_Clear();
    fail_argument(name, "__dlpack__() to return an unconsumed \"dltensor\" capsule",
                  given ? "a capsule named \"" + std::string(given) + "\"" : std::string(Py_TYPE(capsule.ptr())->tp_name));
  }
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  std::shared_ptr<DLManagedTensor> keeper(managed, [](DLManagedTensor* m) {
    if (m->deleter != nullptr) {
      py::gil_scoped_acquire gil;
      m->deleter(m);
    }
  });
  // Consumed: the capsule's destructor leaves the tensor to the view.
  if (PyCapsule_SetName(capsule.ptr(), "used_dltensor") != 0) throw py::error_already_set();
  const DLTensor& t = managed->dl_tensor;
  if (t.device.device_type != kDLCUDA && t.device.device_type != kDLCUDAManaged) {
    fail_argument(name, "an array on a CUDA device (DLPack device type 2, kDLCUDA)",
                  "DLPack device type " + std::to_string(t.device.device_type));
  }
  DType dtype;
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32 && t.dtype.lanes == 1) {
    dtype = DType::float32;
  } else if (t.dtype.code == kDLInt && t.dtype.bits == 64 && t.dtype.lanes == 1) {
    dtype = DType::int64;
  } else {
    throw py::type_error(name + ": expected dtype float32 or int64, got the DLPack dtype (code " +
                         std::to_string(t.dtype.code) + ", bits " + std::to_string(t.dtype.bits) + ", lanes " +
                         std::to_string(t.dtype.lanes) + ")");
  }
  if (t.ndim < 0 || (t.ndim > 0 && t.shape == nullptr)) fail_argument(name, "a DLPack tensor with a shape", "none");
  const std::vector<int64_t> dims(t.shape, t.shape + t.ndim);
  int64_t count = 0;
  std::vector<Py_intptr_t> shape = checked_shape(name, dims, dtype, &count);
  if (t.strides != nullptr) {
    std::vector<int64_t> byte_strides(t.strides, t.strides + t.ndim);
    for (int64_t& stride : byte_strides) stride *= static_cast<int64_t>(itemsize(dtype));
    check_c_contiguous(name, dims, byte_strides, dtype, count);
  }
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  check_device_memory(name, d, data, static_cast<size_t>(count) * itemsize(dtype), dtype);
  return DeviceArray(d, dtype, std::move(shape), count, data, std::move(keeper));
}

void require_gpu(const DeviceArray& a, const char* protocol) {
  if (a.device() != Device::gpu) {
    throw py::attribute_error(std::string(protocol) + ": this array lives on the emulated device, not a CUDA GPU");
  }
}

// __cuda_array_interface__ (version 3) of an array on the GPU. The kernels
// run on the legacy default stream, so "stream" is 1 (the protocol's name
// for it): a consumer on another stream waits for them.
py::dict cuda_array_interface(const DeviceArray& a) {
  require_gpu(a, "__cuda_array_interface__");
  py::dict d;
  d["shape"] = shape_tuple(a);
  d["typestr"] = a.dtype == DType::float32 ? "<f4" : "<i8";
  d["data"] = py::make_tuple(reinterpret_cast<uintptr_t>(a.data()), false);
  d["strides"] = py::none();
  d["version"] = 3;
  d["stream"] = kLegacyStream;
  return d;
}

// What a "dltensor" capsule of ours owns: the array's storage and shape.
struct DLPackExport {
  std::shared_ptr<void> storage;
  std::vector<int64_t> shape;
  cuda::dlpack::DLManagedTensor managed{};
};

int dlpack_device_id(const DeviceArray& a) {
  if (a.device() == Device::emulated) return 0;
  return a.nbytes() > 0 ? cuda::device_of_pointer(a.data()) : cuda::current_device();
}

// A "dltensor" capsule viewing a (kDLCUDA; the emulated device plays a GPU
// in the tests' exports). `stream` is the consumer's, as DLPack names it
// (None: the legacy default stream; -1: no synchronization); any stream
// but the default ones first waits for the kernels queued on ours.
py::capsule dlpack_capsule(const DeviceArray& a, const std::optional<int64_t>& stream) {
  using namespace cuda::dlpack;
  if (stream && (*stream == 0 || *stream < -1)) {
    fail_argument("stream", "None, -1, 1, 2 or a cudaStream_t (0 is not allowed by DLPack)", std::to_string(*stream));
  }
  if (a.device() == Device::gpu && stream && *stream > 2) {
    cuda::stream_wait(static_cast<uintptr_t>(*stream), kLegacyStream);
  }
  auto export_ = std::make_unique<DLPackExport>();
  export_->storage = a.storage;
  export_->shape.assign(a.shape.begin(), a.shape.end());
  DLTensor& t = export_->managed.dl_tensor;
  t.data = a.data();
  t.device = {kDLCUDA, dlpack_device_id(a)};
  t.ndim = static_cast<int32_t>(a.shape.size());
  t.dtype = a.dtype == DType::float32 ? DLDataType{kDLFloat, 32, 1} : DLDataType{kDLInt, 64, 1};
  t.shape = export_->shape.data();
  t.strides = nullptr;
  t.byte_offset = 0;
  export_->managed.manager_ctx = export_.get();
  export_->managed.deleter = [](DLManagedTensor* m) {
    py::gil_scoped_acquire gil;  // the storage may be a Producer's Python object
    delete static_cast<DLPackExport*>(m->manager_ctx);
  };
  PyObject* capsule = PyCapsule_New(&export_->managed, "dltensor", [](PyObject* self) {
    // Unconsumed (a consumer renames it "used_dltensor" and calls the deleter itself).
    if (PyCapsule_IsValid(self, "dltensor")) {
      auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(self, "dltensor"));
      m->deleter(m);
    }
  });
  if (capsule == nullptr) throw py::error_already_set();
  export_.release();
  return py::reinterpret_steal<py::capsule>(capsule);
}

// The DLPack protocol of an array on the GPU (absent on the emulated device:
// the properties raise AttributeError, so hasattr() says False).
py::cpp_function dlpack_method(const DeviceArray& a) {
  require_gpu(a, "__dlpack__");
  return py::cpp_function(
      [a](std::optional<int64_t> stream, py::object max_version, py::object dl_device, py::object copy) {
        (void)max_version;  // the unversioned capsule is what every consumer takes
        if (!copy.is_none() && copy.cast<bool>()) {
          throw py::buffer_error("__dlpack__: copy=True is not supported (minidnn exports views only)");
        }
        if (!dl_device.is_none()) {
          const auto wanted = dl_device.cast<std::pair<int, int>>();
          if (wanted != std::pair<int, int>{cuda::dlpack::kDLCUDA, dlpack_device_id(a)}) {
            throw py::buffer_error("__dlpack__: the array lives on (kDLCUDA, " + std::to_string(dlpack_device_id(a)) +
                                   "), and minidnn does not copy it to another device");
          }
        }
        return dlpack_capsule(a, stream);
      },
      py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
      py::arg("dl_device") = py::none(), py::arg("copy") = py::none());
}

py::cpp_function dlpack_device_method(const DeviceArray& a) {
  require_gpu(a, "__dlpack_device__");
  const int id = dlpack_device_id(a);
  return py::cpp_function([id] { return py::make_tuple(static_cast<int>(cuda::dlpack::kDLCUDA), id); });
}

const DeviceArray& float_input(const DeviceArray& a, const char* name) {
  if (a.dtype != DType::float32) fail_argument(name, "a float32 array", "int64");
  return a;
}

void same_device(const DeviceArray& a, const char* a_name, const DeviceArray& b, const char* b_name) {
  if (a.device() != b.device()) {
    fail_argument(a_name, std::string("an array on the device of ") + b_name + " (" + cuda::device_label(b.device()) + ")",
                  std::string("one on ") + cuda::device_label(a.device()));
  }
}

void same_device_and_shape(const DeviceArray& a, const char* a_name, const DeviceArray& b, const char* b_name) {
  same_device(a, a_name, b, b_name);
  if (a.shape != b.shape) {
    fail_argument(a_name, "shape " + shape_text(b) + " (the shape of " + b_name + ")", shape_text(a));
  }
}

// Kernels on the emulated device take as long as CPU kernels: they run
// without the GIL (on the GPU a launch only queues work).
template <class Body>
void run_released(Body&& body) {
  py::gil_scoped_release nogil;
  body();
}

DeviceArray activation_forward(cuda::Activation f, const DeviceArray& x_arg, float alpha) {
  const DeviceArray& x = float_input(x_arg, "x");
  DeviceArray y = new_float_array_on(x.device(), x.shape);
  const cuda::DeviceKernels& k = cuda::kernels(x.device());
  run_released([&] { k.activation_forward(f, x.floats(), y.floats(), x.size, alpha); });
  return y;
}

DeviceArray activation_backward(cuda::Activation f, const DeviceArray& g_arg, const DeviceArray& s_arg,
                                const char* saved_name, float alpha) {
  const DeviceArray& g = float_input(g_arg, "grad_y");
  const DeviceArray& s = float_input(s_arg, saved_name);
  same_device_and_shape(g, "grad_y", s, saved_name);
  DeviceArray gx = new_float_array_on(s.device(), s.shape);
  const cuda::DeviceKernels& k = cuda::kernels(s.device());
  run_released([&] { k.activation_backward(f, g.floats(), s.floats(), gx.floats(), s.size, alpha); });
  return gx;
}

// (outer, C, inner) of a softmax over `axis` (normalized by the Python
// layer; a 0-d array is one row of one element).
void softmax_view(const DeviceArray& a, int64_t axis, int64_t* outer, int64_t* C, int64_t* inner) {
  const int64_t nd = static_cast<int64_t>(a.shape.size());
  if (axis < 0 || axis >= std::max<int64_t>(nd, 1)) {
    fail_argument("axis", "an axis in [0, " + std::to_string(std::max<int64_t>(nd, 1)) + ")", std::to_string(axis));
  }
  *outer = *inner = 1;
  *C = nd == 0 ? 1 : a.shape[axis];
  for (int64_t i = 0; i < axis; ++i) *outer *= a.shape[i];
  for (int64_t i = axis + 1; i < nd; ++i) *inner *= a.shape[i];
}

DeviceArray softmax_forward(bool log, const DeviceArray& x_arg, int64_t axis) {
  const DeviceArray& x = float_input(x_arg, "x");
  int64_t outer, C, inner;
  softmax_view(x, axis, &outer, &C, &inner);
  DeviceArray y = new_float_array_on(x.device(), x.shape);
  const cuda::DeviceKernels& k = cuda::kernels(x.device());
  Buffer ws(x.device(), k.softmax_forward_workspace(outer, C, inner));
  run_released([&] { k.softmax_forward(log, x.floats(), y.floats(), outer, C, inner, ws.data); });
  return y;
}

DeviceArray softmax_backward(bool log, const DeviceArray& g_arg, const DeviceArray& y_arg, int64_t axis) {
  const DeviceArray& g = float_input(g_arg, "grad_y");
  const DeviceArray& y = float_input(y_arg, "y");
  same_device_and_shape(g, "grad_y", y, "y");
  int64_t outer, C, inner;
  softmax_view(y, axis, &outer, &C, &inner);
  DeviceArray gx = new_float_array_on(y.device(), y.shape);
  const cuda::DeviceKernels& k = cuda::kernels(y.device());
  run_released([&] { k.softmax_backward(log, g.floats(), y.floats(), gx.floats(), outer, C, inner); });
  return gx;
}

// ---------------------------------------------------------------------------
// losses
// ---------------------------------------------------------------------------

// A loss call's arguments as the kernels take them (loss.cuh); `target_shape`
// is the shape of the per-element loss.
struct LossCall {
  cuda::LossInput in{};
  cuda::LossReduction reduction = cuda::LossReduction::mean;
  std::vector<Py_intptr_t> input_shape;
  std::vector<Py_intptr_t> target_shape;
  Device device = Device::emulated;

  int64_t elements() const { return in.outer * in.inner; }
};

cuda::LossReduction parse_reduction(const std::string& r) {
  if (r == "none") return cuda::LossReduction::none;
  if (r == "mean") return cuda::LossReduction::mean;
  if (r == "sum") return cuda::LossReduction::sum;
  fail_argument("reduction", "one of 'none', 'mean', 'sum'", "'" + r + "'");
}

// input (N, C, d1..dk) or (C,), the class axis 1 (0 when unbatched);
// target class indices (int64) shaped like it without the class axis, or
// float32 probabilities shaped like it (when `allow_prob`).
LossCall loss_call(const DeviceArray& x_arg, const char* x_name, const DeviceArray& target, py::handle weight_arg,
                   int64_t ignore_index, const std::string& reduction, double label_smoothing, bool allow_prob) {
  const DeviceArray& x = float_input(x_arg, x_name);
  const int nd = static_cast<int>(x.shape.size());
  if (nd == 0) fail_argument(x_name, "shape (C,), (N, C) or (N, C, d1, ..., dk)", "()");
  const int class_axis = nd == 1 ? 0 : 1;
  LossCall call;
  call.device = x.device();
  call.input_shape = x.shape;
  call.reduction = parse_reduction(reduction);
  cuda::LossInput& in = call.in;
  in.x = x.floats();
  in.classes = x.shape[class_axis];
  if (in.classes < 1) fail_argument(x_name, "at least one class", shape_text(x));
  in.outer = in.inner = 1;
  for (int i = 0; i < class_axis; ++i) in.outer *= x.shape[i];
  for (int i = class_axis + 1; i < nd; ++i) in.inner *= x.shape[i];
  for (int i = 0; i < nd; ++i) {
    if (i != class_axis) call.target_shape.push_back(x.shape[i]);
  }
  in.ignore_index = ignore_index;
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
    fail_argument("label_smoothing", "a float in [0.0, 1.0]", std::to_string(label_smoothing));
  }
  in.label_smoothing = static_cast<float>(label_smoothing);

  same_device(target, "target", x, x_name);
  if (target.dtype == DType::float32) {
    if (!allow_prob) fail_argument("target", "class indices of dtype int64", "float32");
    same_device_and_shape(target, "target", x, x_name);
    in.prob = target.floats();
  } else {
    if (target.shape != call.target_shape) {
      fail_argument("target", "class indices of shape " + py::str(py::cast(call.target_shape)).cast<std::string>(),
                    shape_text(target));
    }
    in.index = static_cast<const int64_t*>(target.data());
  }
  if (!weight_arg.is_none()) {
    const DeviceArray& w = float_input(weight_arg.cast<const DeviceArray&>(), "weight");
    same_device(w, "weight", x, x_name);
    if (w.shape != std::vector<Py_intptr_t>{static_cast<Py_intptr_t>(in.classes)}) {
      fail_argument("weight", "shape (" + std::to_string(in.classes) + ",)", shape_text(w));
    }
    in.weight = w.floats();
  }
  return call;
}

// After the kernels: an IndexError for the first class target out of range
// (waits for the kernels, as PyTorch's device-side check cannot raise).
void check_class_targets(const LossCall& call, const cuda::LossWorkspace* ws) {
  if (call.in.index == nullptr) return;
  const cuda::MemoryBackend& memory = cuda::memory(call.device);
  int64_t first_bad = 0, target = 0;
  {
    py::gil_scoped_release nogil;
    memory.to_host(&first_bad, &ws->total.first_bad, sizeof first_bad);
    if (first_bad < call.elements()) memory.to_host(&target, call.in.index + first_bad, sizeof target);
  }
  if (first_bad < call.elements()) {
    throw py::index_error("target: expected class indices in [0, " + std::to_string(call.in.classes - 1) +
                          "] or ignore_index=" + std::to_string(call.in.ignore_index) + ", got " +
                          std::to_string(target));
  }
}

DeviceArray loss_forward(bool nll, const LossCall& call) {
  const int64_t n = call.elements();
  const bool reduced = call.reduction != cuda::LossReduction::none;
  DeviceArray per_element = reduced ? DeviceArray(call.device, DType::float32, {n})
                                    : new_float_array_on(call.device, call.target_shape);
  DeviceArray out = reduced ? new_float_array_on(call.device, {}) : per_element;
  Buffer ws(call.device, sizeof(cuda::LossWorkspace));
  auto* workspace = static_cast<cuda::LossWorkspace*>(ws.data);
  const cuda::DeviceKernels& k = cuda::kernels(call.device);
  run_released([&] { k.loss_forward(nll, call.in, call.reduction, per_element.floats(), workspace, out.floats()); });
  check_class_targets(call, workspace);
  return out;
}

// grad_loss: a float32 array shaped like the per-element loss for "none";
// else a 0-d float32 array or a float.
DeviceArray loss_backward(bool nll, py::handle grad_loss, const LossCall& call) {
  cuda::LossGrad g;
  if (py::isinstance<DeviceArray>(grad_loss)) {
    const DeviceArray& a = float_input(grad_loss.cast<const DeviceArray&>(), "grad_loss");
    if (a.device() != call.device) {
      fail_argument("grad_loss", std::string("an array on ") + cuda::device_label(call.device),
                    std::string("one on ") + cuda::device_label(a.device()));
    }
    const bool none = call.reduction == cuda::LossReduction::none;
    if (a.shape != (none ? call.target_shape : std::vector<Py_intptr_t>{})) {
      fail_argument("grad_loss", none ? "the shape of the per-element loss" : "a 0-d array", shape_text(a));
    }
    (none ? g.per_element : g.device_scalar) = a.floats();
  } else if (call.reduction == cuda::LossReduction::none) {
    fail_argument("grad_loss", "a minidnn.cuda.Array for reduction='none'",
                  py::str(py::type::of(grad_loss)).cast<std::string>());
  } else {
    g.scalar = static_cast<float>(grad_loss.cast<double>());
  }
  DeviceArray grad = new_float_array_on(call.device, call.input_shape);
  Buffer ws(call.device, sizeof(cuda::LossWorkspace));
  auto* workspace = static_cast<cuda::LossWorkspace*>(ws.data);
  const cuda::DeviceKernels& k = cuda::kernels(call.device);
  run_released([&] { k.loss_backward(nll, call.in, call.reduction, g, workspace, grad.floats()); });
  check_class_targets(call, workspace);
  return grad;
}

void bind_losses(py::module_& m) {
  m.def(
      "cross_entropy",
      [](const DeviceArray& logits, const DeviceArray& target, py::handle weight, int64_t ignore_index,
         const std::string& reduction, double label_smoothing) {
        return loss_forward(false, loss_call(logits, "logits", target, weight, ignore_index, reduction,
                                             label_smoothing, true));
      },
      py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"),
      py::arg("label_smoothing"));
  m.def(
      "cross_entropy_backward",
      [](py::handle grad_loss, const DeviceArray& logits, const DeviceArray& target, py::handle weight,
         int64_t ignore_index, const std::string& reduction, double label_smoothing) {
        return loss_backward(false, grad_loss, loss_call(logits, "logits", target, weight, ignore_index, reduction,
                                                         label_smoothing, true));
      },
      py::arg("grad_loss"), py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"),
      py::arg("reduction"), py::arg("label_smoothing"));
  m.def(
      "nll_loss",
      [](const DeviceArray& log_probs, const DeviceArray& target, py::handle weight, int64_t ignore_index,
         const std::string& reduction) {
        return loss_forward(true, loss_call(log_probs, "log_probs", target, weight, ignore_index, reduction, 0.0,
                                            false));
      },
      py::arg("log_probs"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"));
  m.def(
      "nll_loss_backward",
      [](py::handle grad_loss, const DeviceArray& log_probs, const DeviceArray& target, py::handle weight,
         int64_t ignore_index, const std::string& reduction) {
        return loss_backward(true, grad_loss, loss_call(log_probs, "log_probs", target, weight, ignore_index,
                                                        reduction, 0.0, false));
      },
      py::arg("grad_loss"), py::arg("log_probs"), py::arg("target"), py::arg("weight"), py::arg("ignore_index"),
      py::arg("reduction"));
}

void bind_array(py::module_& m) {
  py::class_<DeviceArray>(m, "Array",
                          "A C-contiguous float32 or int64 array in CUDA device memory (or the emulated "
                          "device's); made by minidnn.cuda.to_device and returned by ops on CUDA arrays.")
      .def_property_readonly("shape", &shape_tuple)
      .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.size(); })
      .def_property_readonly("size", [](const DeviceArray& a) { return a.size; })
      .def_property_readonly("nbytes", &DeviceArray::nbytes)
      .def_property_readonly("dtype",
                             [](const DeviceArray& a) { return a.dtype == DType::float32 ? py::dtype("float32") : py::dtype("int64"); })
      .def_property_readonly("device", [](const DeviceArray& a) { return std::string(cuda::device_label(a.device())); })
      .def("numpy", &to_host, "A NumPy copy of the array (waits for the kernels that write it).")
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def_property_readonly("__dlpack__", &dlpack_method)
      .def_property_readonly("__dlpack_device__", &dlpack_device_method)
      // Private (tests): the address of the data, and a DLPack export on
      // either device, so that a test can play another library's array.
      .def_property_readonly("_address", [](const DeviceArray& a) { return reinterpret_cast<uintptr_t>(a.data()); })
      .def("_dlpack", &dlpack_capsule, py::arg("stream") = py::none())
      .def("__repr__", [](const DeviceArray& a) {
        return "minidnn.cuda.Array(shape=" + shape_text(a) + ", dtype=" + (a.dtype == DType::float32 ? "float32" : "int64") +
               ", device=" + cuda::device_label(a.device()) + ")";
      });
}

void bind_activations(py::module_& m) {
  struct Op {
    cuda::Activation f;
    const char* name;
    const char* backward_name;
    const char* saved;
  };
  for (const Op op : {Op{cuda::Activation::relu, "relu", "relu_backward", "x"},
                      Op{cuda::Activation::sigmoid, "sigmoid", "sigmoid_backward", "y"},
                      Op{cuda::Activation::tanh, "tanh", "tanh_backward", "y"}}) {
    m.def(op.name, [f = op.f](const DeviceArray& x) { return activation_forward(f, x, 0.0f); }, py::arg("x"));
    m.def(
        op.backward_name,
        [f = op.f, saved = op.saved](const DeviceArray& g, const DeviceArray& s) {
          return activation_backward(f, g, s, saved, 0.0f);
        },
        py::arg("grad_y"), py::arg(op.saved));
  }
  m.def(
      "leaky_relu",
      [](const DeviceArray& x, double slope) {
        return activation_forward(cuda::Activation::leaky_relu, x, static_cast<float>(slope));
      },
      py::arg("x"), py::arg("negative_slope"));
  m.def(
      "leaky_relu_backward",
      [](const DeviceArray& g, const DeviceArray& x, double slope) {
        return activation_backward(cuda::Activation::leaky_relu, g, x, "x", static_cast<float>(slope));
      },
      py::arg("grad_y"), py::arg("x"), py::arg("negative_slope"));
}

void set_emulator_order(const std::string& order, uint64_t seed) {
  if (order == "forward") {
    emu::set_order(emu::Order::forward, seed);
  } else if (order == "reverse") {
    emu::set_order(emu::Order::reverse, seed);
  } else if (order == "shuffled") {
    emu::set_order(emu::Order::shuffled, seed);
  } else {
    fail_argument("order", "'forward', 'reverse' or 'shuffled'", "'" + order + "'");
  }
}

}  // namespace

void bind_cuda(py::module_& m) {
  py::module_ c = m.def_submodule("cuda", "CUDA device queries, arrays and kernels");
  c.def("built", &cuda::built);
  c.def("device_count", &cuda::device_count);
  c.def("device_name", &cuda::device_name, py::arg("index"));
  c.def("status", &cuda::status);
  c.def("runtime_version", &cuda::runtime_version);

  bind_array(c);
  c.def("to_device", &to_device, py::arg("x"), py::arg("device"));
  // Private (_validate): views of other libraries' arrays.
  c.def("_view_of", &view_of, py::arg("producer"), py::arg("address"), py::arg("shape"), py::arg("dtype"),
        py::arg("byte_strides"), py::arg("stream"), py::arg("name"), py::arg("device"));
  c.def("_from_dlpack", &from_dlpack, py::arg("capsule"), py::arg("name"), py::arg("device"));
  c.def("empty_cache", [](const std::string& device) { cuda::empty_cache(parse_device(device)); }, py::arg("device"));
  c.def("cached_bytes", [](const std::string& device) { return cuda::cached_bytes(parse_device(device)); },
        py::arg("device"));
  bind_activations(c);
  bind_losses(c);
  c.def("softmax", [](const DeviceArray& x, int64_t axis) { return softmax_forward(false, x, axis); }, py::arg("x"),
        py::arg("axis"));
  c.def("log_softmax", [](const DeviceArray& x, int64_t axis) { return softmax_forward(true, x, axis); }, py::arg("x"),
        py::arg("axis"));
  c.def(
      "softmax_backward",
      [](const DeviceArray& g, const DeviceArray& y, int64_t axis) { return softmax_backward(false, g, y, axis); },
      py::arg("grad_y"), py::arg("y"), py::arg("axis"));
  c.def(
      "log_softmax_backward",
      [](const DeviceArray& g, const DeviceArray& y, int64_t axis) { return softmax_backward(true, g, y, axis); },
      py::arg("grad_y"), py::arg("y"), py::arg("axis"));

  // Private: the emulator's thread order (tests), and its test-only kernels.
  c.def("_set_emulator_order", &set_emulator_order, py::arg("order"), py::arg("seed") = 0);
  c.def("_emulator_order", [] {
    const emu::Order o = emu::order();
    return py::make_tuple(o == emu::Order::forward ? "forward" : o == emu::Order::reverse ? "reverse" : "shuffled",
                          emu::order_seed());
  });
  c.def(
      "_emulator_check",
      [](const std::string& name, const DeviceArray& x_arg) {
        const DeviceArray& x = float_input(x_arg, "x");
        if (x.device() != Device::emulated) fail_argument("x", "an array on the emulated device", "one on cuda");
        DeviceArray y = new_float_array_on(Device::emulated, x.shape);
        run_released([&] { cuda::emulated::run_check(name, x.floats(), y.floats(), x.size); });
        return y;
      },
      py::arg("name"), py::arg("x"));
}

}  // namespace minidnn::bindings
