// device.h — what the CUDA runtime reports about this machine's GPUs. Plain C++: the
// bindings include it without the CUDA headers.
#pragma once

#include <string>

namespace fastnn::cuda {

// cudaGetDeviceCount's answer. `error` is empty when the runtime answered, else it says
// why no GPU is usable and names the CUDA error: no device, a driver missing or too old
// for this runtime, ... (a failure is never just "0 devices").
struct DeviceStatus {
  int count = 0;
  std::string error;
};
DeviceStatus device_status();

std::string device_name(int index);
int runtime_version();               // e.g. 13000 for CUDA 13.0

// Throws CudaError (RuntimeError) saying why device='cuda' cannot run here, unless this
// process sees a GPU. `use_instead` ends the message, e.g. "use device='cpu'".
void require_device(const char* use_instead);

}  // namespace fastnn::cuda
