// activation.cu — ReLU and its gradient, one grid-stride pass each (memory-bound; a warp
// reads 32 consecutive floats, so loads coalesce). Either may run in place (y == x,
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

}  // namespace

void relu_forward(int64_t count, const float* x, float* y, cudaStream_t stream) {
  if (count <= 0) return;
  relu_forward_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, x, y);
  check_launch("relu_forward_kernel");
}

void relu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   cudaStream_t stream) {
  if (count <= 0) return;
  relu_backward_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, x, dy, dx);
  check_launch("relu_backward_kernel");
}

}  // namespace fastnn::cuda
