// optimizer.cu — Keras Adam over a flat parameter array in one grid-stride launch:
//   m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);  p −= α·m / (√v + ε)
// with α, 1 − β₁ and 1 − β₂ formed by the caller (AdamStep), in the CPU code's order.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

__global__ void adam_update_kernel(int64_t count, float* __restrict__ param,
                                   const float* __restrict__ grad, float* __restrict__ m,
                                   float* __restrict__ v, AdamStep step) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float g = grad[i];
    const float m_i = m[i] + (g - m[i]) * step.one_minus_beta_1;
    const float v_i = v[i] + (g * g - v[i]) * step.one_minus_beta_2;
    m[i] = m_i;
    v[i] = v_i;
    param[i] -= step.alpha * m_i / (sqrtf(v_i) + step.epsilon);
  }
}

}  // namespace

void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, cudaStream_t stream) {
  if (count <= 0) return;
  adam_update_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, param, grad, m, v,
                                                                 step);
  check_launch("adam_update_kernel");
}

}  // namespace fastnn::cuda
