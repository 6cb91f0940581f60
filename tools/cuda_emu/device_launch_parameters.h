// device_launch_parameters.h — threadIdx, blockIdx, blockDim and gridDim come with cuda_runtime.h.
#pragma once
#include "cuda_runtime.h"
