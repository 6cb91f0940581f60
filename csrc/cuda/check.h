// check.h — every CUDA runtime call's return code becomes a C++ exception naming the call:
// CudaError (RuntimeError in Python), or DeviceOutOfMemory (MemoryError) for
// cudaErrorMemoryAllocation. DeviceBuffer owns device memory (RAII).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

namespace fastnn::cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct DeviceOutOfMemory : std::bad_alloc {
  explicit DeviceOutOfMemory(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// Throws when `status` is not cudaSuccess; `call` names what returned it.
inline void check(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  const std::string message = std::string(call) + " failed: " + cudaGetErrorName(status) +
                              " (" + cudaGetErrorString(status) + ")";
  if (status == cudaErrorMemoryAllocation) throw DeviceOutOfMemory("out of GPU memory: " + message);
  throw CudaError(message);
}

// After a kernel launch: a bad configuration shows up here, not at the launch.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Device memory for `count` elements of T, freed on destruction; not copyable.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t count) : count_(count) {
    if (count > 0) {
      check(cudaMalloc(reinterpret_cast<void**>(&data_), sizeof(T) * count),
            ("cudaMalloc of " + std::to_string(sizeof(T) * count) + " bytes").c_str());
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), count_(other.count_) {
    other.data_ = nullptr;
    other.count_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return count_; }

  void upload(const T* host, cudaStream_t stream) {
    check(cudaMemcpyAsync(data_, host, sizeof(T) * count_, cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (host to device)");
  }
  void download(T* host, cudaStream_t stream) const {
    check(cudaMemcpyAsync(host, data_, sizeof(T) * count_, cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync (device to host)");
  }

 private:
  T* data_ = nullptr;
  int64_t count_ = 0;
};

}  // namespace fastnn::cuda
