// device.cu — device queries. With the runtime linked statically these calls work on a
// machine without a driver: they return an error code, which means "no GPU here".
#include <cuda_runtime.h>

#include "cuda/device.h"

namespace fastnn::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return 0;
  }
  return count;
}

std::string device_name(int index) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "";
  return prop.name;
}

int runtime_version() {
  int version = 0;
  cudaRuntimeGetVersion(&version);
  return version;
}

}  // namespace fastnn::cuda
