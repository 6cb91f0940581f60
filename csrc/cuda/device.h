// device.h — what the CUDA runtime reports about this machine's GPUs.
#pragma once

#include <string>

namespace fastnn::cuda {

int device_count();                  // 0 when there is no GPU or no driver
std::string device_name(int index);
int runtime_version();               // e.g. 13000 for CUDA 13.0

}  // namespace fastnn::cuda
