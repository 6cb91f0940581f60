// op_call.cpp — OpCall's choice of backend and its host scratch memory.
#include "bindings/op_call.h"

#include <algorithm>
#include <stdexcept>

namespace fastnn::bindings {

KernelTiming& kernel_timing() {
  static KernelTiming timing;
  return timing;
}

OpCall::OpCall(const std::string& device)
    : kernels_(&cpu_kernels()), threads_(get_num_threads()) {
  if (device == "cpu") return;
  if (device != "cuda") fail("device must be 'cpu' or 'cuda', got '", device, "'");
#ifdef FASTNN_WITH_CUDA
  device_ = std::make_unique<cuda::HostCall>();
  kernels_ = &cuda::kernels;
  threads_ = 1;
#else
  throw std::runtime_error(
      "device='cuda': this fastnn was built without CUDA (no nvcc was found when it was "
      "installed, or FASTNN_CUDA=OFF); reinstall with the CUDA toolkit on PATH, or use "
      "device='cpu'");
#endif
}

float* OpCall::host_workspace(int64_t floats) {
  try {
    host_scratch_.emplace_back(std::max<int64_t>(floats, 1));
  } catch (const std::bad_alloc&) {
    const std::string message = "out of memory: this op needs " +
                                std::to_string(floats * 4.0 / (1 << 30)) +
                                " GiB of scratch memory";
    PyErr_SetString(PyExc_MemoryError, message.c_str());
    throw pybind11::error_already_set();
  }
  return host_scratch_.back().data();
}

}  // namespace fastnn::bindings
