// activation.cu — ReLU and its gradient, and dropout with the CPU's coins; one grid-stride
// pass each (memory-bound; a warp reads 32 consecutive floats, so loads coalesce). Either may run in place (y == x,
// dx == dy, as the CPU engine calls relu_backward), so the pointers are not __restrict__.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

__global__ void relu_forward_kernel(int64_t count, const float* x, float* y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

// Zero gradient at x == 0, as TensorFlow and PyTorch define it.
__global__ void relu_backward_kernel(int64_t count, const float* x, const float* dy,
                                     float* dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
  }
}

// The CPU's coin for element i (cpu/activation.cpp): scale when kept, else 0.
__device__ float dropout_factor(uint64_t stream, int64_t i, uint32_t threshold, float scale) {
  const bool keep = (splitmix64(stream + static_cast<uint64_t>(i)) >> 40) >= threshold;
  return keep ? scale : 0.0f;
}

// fastnn.ops' dropout: y = x · factor, and the factor itself into mask.
__global__ void dropout_forward_kernel(int64_t count, const float* x, float* y, float* mask,
                                       DropoutStep step) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float factor = dropout_factor(step.stream, i, step.threshold, step.scale);
    mask[i] = factor;
    y[i] = x[i] * factor;
  }
}

// The engine's: y = x · factor (forward) or dx = dy · factor (backward), the same pass
// either way, the stream formed from the iteration in TrainState.
__global__ void dropout_resident_kernel(int64_t count, const float* in, float* out,
                                        uint32_t threshold, float scale, uint64_t layer_stream,
                                        const TrainState* __restrict__ state) {
  const uint64_t stream = splitmix64(layer_stream + static_cast<uint64_t>(state->iteration));
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    out[i] = in[i] * dropout_factor(stream, i, threshold, scale);
  }
}

}  // namespace

void dropout_forward_resident(int64_t count, const float* x, float* y, uint32_t threshold,
                              float scale, uint64_t layer_stream, const TrainState* state,
                              cudaStream_t stream) {
  if (count <= 0) return;
  dropout_resident_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, x, y, threshold, scale, layer_stream, state);
  check_launch("dropout_resident_kernel (forward)");
}

void dropout_backward_resident(int64_t count, const float* dy, float* dx, uint32_t threshold,
                               float scale, uint64_t layer_stream, const TrainState* state,
                               cudaStream_t stream) {
  if (count <= 0) return;
  dropout_resident_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, dy, dx, threshold, scale, layer_stream, state);
  check_launch("dropout_resident_kernel (backward)");
}

void dropout_forward(int64_t count, const float* x, float* y, float* mask,
                     const DropoutStep& step, const Exec& ex) {
  if (count <= 0) return;
  dropout_forward_kernel<<<grid_blocks(count), kGridThreads, 0, stream_of(ex)>>>(count, x, y,
                                                                                mask, step);
  check_launch("dropout_forward_kernel");
}

void relu_forward(int64_t count, const float* x, float* y, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (count <= 0) return;
  relu_forward_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, x, y);
  check_launch("relu_forward_kernel");
}

void relu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (count <= 0) return;
  relu_backward_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, x, dy, dx);
  check_launch("relu_backward_kernel");
}

}  // namespace fastnn::cuda

// ---- STUBS (temporary) ----
#include "common.h"
namespace fastnn::cuda {

void activation_forward(const ActivationSpec& a, int64_t count, const float* x, float* y, const Exec& ex) {
  fail("activation_forward: not implemented yet (a stub being replaced in this change)");
}
void activation_backward(const ActivationSpec& a, int64_t count, const float* x, const float* y, const float* dy, float* dx, const Exec& ex) {
  fail("activation_backward: not implemented yet (a stub being replaced in this change)");
}
void softmax_backward(int64_t n, int64_t classes, const float* y, const float* dy, float* dx, const Exec& ex) {
  fail("softmax_backward: not implemented yet (a stub being replaced in this change)");
}

}  // namespace fastnn::cuda
