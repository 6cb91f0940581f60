// device.cu — device queries. With the runtime linked statically these calls work on a
// machine without a driver: they return an error code, which is reported by name.
#include <cuda_runtime.h>

#include <string>

#include "cuda/check.h"
#include "cuda/device.h"

namespace fastnn::cuda {
namespace {

std::string runtime_name() {
  const int v = runtime_version();
  return "CUDA " + std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10) + " runtime";
}

std::string explain(cudaError_t status) {
  const std::string code = std::string(cudaGetErrorName(status));
  switch (status) {
    case cudaErrorNoDevice:
      return "no CUDA GPU is visible (" + code +
             ": no GPU in this machine, or CUDA_VISIBLE_DEVICES hides it)";
    case cudaErrorInsufficientDriver:
      return "no NVIDIA driver, or a driver too old for this " + runtime_name() + " (" + code +
             "): install or update the driver";
    default:
      return "cudaGetDeviceCount failed: " + code + " (" + cudaGetErrorString(status) + ")";
  }
}

}  // namespace

DeviceStatus device_status() {
  DeviceStatus s;
  const cudaError_t status = cudaGetDeviceCount(&s.count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the error so later queries start clean
    s.count = 0;
    s.error = explain(status);
  } else if (s.count == 0) {
    s.error = "the " + runtime_name() + " reports no CUDA device";
  }
  return s;
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

void require_device(const char* use_instead) {
  const DeviceStatus s = device_status();
  if (s.count > 0) return;
  throw CudaError("device='cuda' needs a CUDA GPU, and this process has none: " + s.error +
                  "; " + use_instead);
}

}  // namespace fastnn::cuda
