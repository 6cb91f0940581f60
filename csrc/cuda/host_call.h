// host_call.h — fastnn.ops(device='cuda') on host arrays: the one piece that moves an op's
// arrays to the GPU and back, whatever the op (bindings/op_call.h drives it). Plain C++
// types only: the bindings include this without the CUDA headers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "ops.h"

namespace fastnn::cuda {

extern const Kernels kernels;  // the CUDA backend's table (kernel_table.cu)

class HostCall {
 public:
  HostCall();  // throws CudaError (RuntimeError) naming why when no GPU is usable
  ~HostCall();
  HostCall(const HostCall&) = delete;
  HostCall& operator=(const HostCall&) = delete;

  // Device memory of `bytes` for the host array `host`: filled from it before the kernels
  // run when `upload`, copied back into it after them when `download`. Without either it
  // is scratch (host may be null).
  void* buffer(void* host, int64_t bytes, bool upload, bool download);

  // Uploads, runs `kernels` on this call's stream with `workspace_floats` of device
  // scratch, downloads, and waits. With repeats > 0 the kernels then run `repeats` more
  // times between two events, on the data already on the device, and the mean seconds
  // per run are returned (0 otherwise).
  double run(const std::function<void(const Exec&)>& kernels, int64_t workspace_floats,
             int repeats);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fastnn::cuda
