// host_call.cu — one op on host arrays, on the GPU: every array gets a DeviceBuffer, the
// uploads, kernels and downloads go in order on one stream, and the call waits for it.
// Every CUDA call is checked (check.h), so a failure is a Python exception naming the
// call, and the buffers are freed on the way out whatever happened.
#include "cuda/host_call.h"

#include <vector>

#include "cuda/check.h"
#include "cuda/device.h"

namespace fastnn::cuda {

struct HostCall::Impl {
  struct Array {
    DeviceBuffer<char> device;
    void* host;
    bool upload, download;
  };
  cudaStream_t stream = nullptr;
  std::vector<Array> arrays;

  ~Impl() {
    if (stream) {
      cudaStreamSynchronize(stream);  // nothing may still use the buffers freed after this
      cudaStreamDestroy(stream);
    }
  }
};

// Timing events, destroyed on the way out.
class Event {
 public:
  Event() { check(cudaEventCreate(&event_), "cudaEventCreate"); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(event_); }
  operator cudaEvent_t() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

HostCall::HostCall() : impl_(std::make_unique<Impl>()) {
  require_device("use device='cpu'");
  check(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

HostCall::~HostCall() = default;

void* HostCall::buffer(void* host, int64_t bytes, bool upload, bool download) {
  impl_->arrays.push_back({DeviceBuffer<char>(bytes), host, upload, download});
  return impl_->arrays.back().device.data();
}

double HostCall::run(const std::function<void(const Exec&)>& kernels, int64_t workspace_floats,
                     int repeats) {
  Impl& m = *impl_;
  DeviceBuffer<float> workspace(workspace_floats);
  for (Impl::Array& a : m.arrays) {
    if (a.upload && a.device.size() > 0) a.device.upload(static_cast<const char*>(a.host), m.stream);
  }
  const Exec ex{1, workspace.data(), m.stream};
  kernels(ex);
  double seconds = 0.0;
  if (repeats > 0) {
    Event start, stop;
    check(cudaEventRecord(start, m.stream), "cudaEventRecord");
    for (int r = 0; r < repeats; ++r) kernels(ex);
    check(cudaEventRecord(stop, m.stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    seconds = ms * 1e-3 / repeats;
  }
  for (Impl::Array& a : m.arrays) {
    if (a.download && a.device.size() > 0) a.device.download(static_cast<char*>(a.host), m.stream);
  }
  check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
  return seconds;
}

}  // namespace fastnn::cuda
