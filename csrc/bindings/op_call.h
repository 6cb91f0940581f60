// op_call.h — runs one fastnn.ops call on the backend its device= names, whatever the op:
// the bindings declare the op's arrays (in, out, in-out, scratch) and give one lambda that
// calls the kernel table. On the CPU the kernels read and write the NumPy arrays in place;
// on the GPU each array is copied there and back by cuda::HostCall. The GIL is released
// while the kernels run. With time_kernels(repeats) on, the kernels also run `repeats`
// more times on the data already in the backend's memory, and last_kernel_seconds() gives
// the mean: the benchmarks time kernels without argument checks or transfers.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "cpu/dispatch.h"
#include "cpu/threads.h"
#include "ops.h"
#ifdef FASTNN_WITH_CUDA
#include "cuda/host_call.h"
#endif

namespace fastnn::bindings {

// time_kernels' setting and the last timed call's mean seconds per run.
struct KernelTiming {
  int repeats = 0;
  double last_seconds = 0.0;
};
KernelTiming& kernel_timing();

class OpCall {
 public:
  // device: 'cpu' or 'cuda' (a build without CUDA, or a process without a GPU, refuses it
  // with a RuntimeError saying why).
  explicit OpCall(const std::string& device);

  const Kernels& kernels() const { return *kernels_; }
  int threads() const { return threads_; }

  // Pointers the kernels may use for the caller's host arrays of `count` elements.
  template <class T>
  const T* in(const T* host, int64_t count) {
    return place(const_cast<T*>(host), count, true, false);
  }
  template <class T>
  T* out(T* host, int64_t count) { return place(host, count, false, true); }
  template <class T>
  T* inout(T* host, int64_t count) { return place(host, count, true, true); }
  template <class T>
  T* scratch(int64_t count);

  // Runs kernels(kernel_table, exec) with `workspace_floats` of scratch in Exec.
  template <class F>
  void run(int64_t workspace_floats, F&& kernels);

 private:
  template <class T>
  T* place(T* host, int64_t count, bool upload, bool download);
  float* host_workspace(int64_t floats);

  const Kernels* kernels_;
  int threads_;
#ifdef FASTNN_WITH_CUDA
  std::unique_ptr<cuda::HostCall> device_;  // null on the CPU
#endif
  std::vector<AlignedBuffer> host_scratch_;
};

template <class T>
T* OpCall::place(T* host, int64_t count, bool upload, bool download) {
#ifdef FASTNN_WITH_CUDA
  if (device_) {
    return static_cast<T*>(device_->buffer(host, count * static_cast<int64_t>(sizeof(T)), upload,
                                           download));
  }
#endif
  (void)count, (void)upload, (void)download;
  return host;
}

template <class T>
T* OpCall::scratch(int64_t count) {
  static_assert(sizeof(T) == sizeof(float), "scratch holds float-sized elements");
#ifdef FASTNN_WITH_CUDA
  if (device_) return place<T>(nullptr, count, false, false);
#endif
  host_scratch_.emplace_back(count);
  return reinterpret_cast<T*>(host_scratch_.back().data());
}

template <class F>
void OpCall::run(int64_t workspace_floats, F&& kernels) {
  KernelTiming& timing = kernel_timing();
  const int repeats = timing.repeats;
  const Kernels& k = *kernels_;
#ifdef FASTNN_WITH_CUDA
  if (device_) {
    pybind11::gil_scoped_release nogil;
    timing.last_seconds =
        device_->run([&](const Exec& ex) { kernels(k, ex); }, workspace_floats, repeats);
    return;
  }
#endif
  const Exec ex{threads_, host_workspace(workspace_floats), nullptr};
  pybind11::gil_scoped_release nogil;
  kernels(k, ex);
  if (repeats > 0) {
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < repeats; ++r) kernels(k, ex);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    timing.last_seconds = took.count() / repeats;
  } else {
    timing.last_seconds = 0.0;
  }
}

}  // namespace fastnn::bindings
