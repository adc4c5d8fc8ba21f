// CUDA device queries. The module links the CUDA runtime statically and
// never the driver library, so these answer "no device" instead of failing
// to load on machines without a GPU or driver.
#pragma once

#include <string>

namespace minidnn::cuda {

bool built();                       // compiled with the CUDA backend
int device_count();                 // 0 without a usable driver and device
std::string device_name(int index); // throws std::out_of_range for a bad index
std::string status();               // why device_count() is 0, or "ok"
int runtime_version();              // CUDA runtime linked in, e.g. 13000; 0 when not built

}  // namespace minidnn::cuda
