// optimizer.cu — Keras Adam over a flat parameter array in one grid-stride launch:
//   m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);  p −= α·m / (√v + ε)
// with α, 1 − β₁ and 1 − β₂ formed by the caller (AdamStep), in the CPU code's order;
// Keras SGD likewise; plus the resident forms (Adam, SGD) that read the step from TrainState.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

__device__ void adam_apply(int64_t count, float* __restrict__ param,
                           const float* __restrict__ grad, float* __restrict__ m,
                           float* __restrict__ v, const AdamStep& step) {
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

__global__ void adam_update_kernel(int64_t count, float* __restrict__ param,
                                   const float* __restrict__ grad, float* __restrict__ m,
                                   float* __restrict__ v, AdamStep step) {
  adam_apply(count, param, grad, m, v, step);
}

// Every thread forms the step's α from t as plan.cpp's adam_step does, in double: a few
// hundred cycles once per thread, cheaper than a separate launch to share it.
__global__ void adam_update_resident_kernel(int64_t count, float* __restrict__ param,
                                            const float* __restrict__ grad,
                                            float* __restrict__ m, float* __restrict__ v,
                                            double beta_1, double beta_2, double epsilon,
                                            const TrainState* __restrict__ state) {
  const double t = static_cast<double>(state->iteration + 1);
  const double alpha =
      state->learning_rate * sqrt(1.0 - pow(beta_2, t)) / (1.0 - pow(beta_1, t));
  const AdamStep step{static_cast<float>(alpha), static_cast<float>(1.0 - beta_1),
                      static_cast<float>(1.0 - beta_2), static_cast<float>(epsilon)};
  adam_apply(count, param, grad, m, v, step);
}

// Keras SGD, as cpu/optimizer.cpp; velocity is null when momentum is 0.
__device__ void sgd_apply(int64_t count, float* __restrict__ param,
                          const float* __restrict__ grad, float* __restrict__ velocity,
                          float learning_rate, float momentum, bool nesterov) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    if (velocity == nullptr) {
      param[i] -= learning_rate * grad[i];
      continue;
    }
    const float v = momentum * velocity[i] - learning_rate * grad[i];
    velocity[i] = v;
    param[i] += nesterov ? momentum * v - learning_rate * grad[i] : v;
  }
}

__global__ void sgd_update_kernel(int64_t count, float* __restrict__ param,
                                  const float* __restrict__ grad, float* __restrict__ velocity,
                                  SgdStep step) {
  sgd_apply(count, param, grad, velocity, step.learning_rate, step.momentum, step.nesterov);
}

__global__ void sgd_update_resident_kernel(int64_t count, float* __restrict__ param,
                                           const float* __restrict__ grad,
                                           float* __restrict__ velocity, float momentum,
                                           bool nesterov, const TrainState* __restrict__ state) {
  sgd_apply(count, param, grad, velocity, static_cast<float>(state->learning_rate), momentum,
            nesterov);
}

}  // namespace

void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (count <= 0) return;
  adam_update_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, param, grad, m, v,
                                                                 step);
  check_launch("adam_update_kernel");
}

void sgd_update(int64_t count, float* param, const float* grad, float* velocity,
                const SgdStep& step, const Exec& ex) {
  if (count <= 0) return;
  sgd_update_kernel<<<grid_blocks(count), kGridThreads, 0, stream_of(ex)>>>(count, param, grad,
                                                                           velocity, step);
  check_launch("sgd_update_kernel");
}

void adam_update_resident(int64_t count, float* param, const float* grad, float* m, float* v,
                          double beta_1, double beta_2, double epsilon, const TrainState* state,
                          cudaStream_t stream) {
  if (count <= 0) return;
  adam_update_resident_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, param, grad, m, v, beta_1, beta_2, epsilon, state);
  check_launch("adam_update_resident_kernel");
}

void sgd_update_resident(int64_t count, float* param, const float* grad, float* velocity,
                         float momentum, bool nesterov, const TrainState* state,
                         cudaStream_t stream) {
  if (count <= 0) return;
  sgd_update_resident_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, param, grad, velocity, momentum, nesterov, state);
  check_launch("sgd_update_resident_kernel");
}

}  // namespace fastnn::cuda
