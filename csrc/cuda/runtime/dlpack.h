// The DLPack ABI (https://github.com/dmlc/dlpack, dlpack.h), the unversioned
// DLManagedTensor that a "dltensor" capsule carries: the few declarations
// minidnn.cuda.Array's __dlpack__ and the ingestion of other libraries'
// arrays need (bindings/cuda.cpp), laid out as the standard's header.
#pragma once

#include <cstdint>

namespace minidnn::cuda::dlpack {

enum DeviceType : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };
enum TypeCode : uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2 };

struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};

struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; nullptr for C-contiguous
  uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

}  // namespace minidnn::cuda::dlpack
