// loss.cu — the element-wise losses with the CPU code's formulas (cpu/loss.cpp): sigmoid
// + binary cross-entropy on logits, and the regression losses (squared, absolute, Huber).
// One grid-stride launch writes each element's gradient and loss; mean_of (softmax_xent.cu)
// takes their mean in double, in a fixed shape, so the bits never vary.
// (The categorical cross-entropy, a softmax per row, is in softmax_xent.cu.)
#include <cmath>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

// e = exp(−|z|), s = sigmoid(−|z|): loss max(z, 0) − z·t + log1p(e), gradient
// (sigmoid(z) − t)/count, each in the form that keeps its digits for a large |z|.
__global__ void sigmoid_xent_kernel(int64_t count, float inv_count, const float* logits,
                                    const float* targets, float* dlogits, float* losses) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float z = logits[i], t = targets[i];
    const float e = expf(-fabsf(z));
    const float s = e / (1.0f + e);
    dlogits[i] = (z >= 0.0f ? (1.0f - t) - s : s - t) * inv_count;
    losses[i] = (z >= 0.0f ? z * (1.0f - t) : -z * t) + log1pf(e);
  }
}

// e = y − t; Huber's gradient c = e clipped to [−δ, δ] and its loss c·(e − c/2), as the
// CPU forms them.
__global__ void regression_kernel(RegressionLoss r, int64_t count, float inv_count,
                                  const float* y, const float* targets, float* dy,
                                  float* losses) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float e = y[i] - targets[i];
    switch (r.kind) {
      case RegressionLoss::Kind::MeanSquared:
        dy[i] = 2.0f * e * inv_count;
        losses[i] = e * e;
        break;
      case RegressionLoss::Kind::MeanAbsolute:
        dy[i] = static_cast<float>((e > 0.0f) - (e < 0.0f)) * inv_count;
        losses[i] = fabsf(e);
        break;
      case RegressionLoss::Kind::Huber: {
        const float c = e > r.delta ? r.delta : e < -r.delta ? -r.delta : e;
        dy[i] = c * inv_count;
        losses[i] = c * (e - 0.5f * c);
        break;
      }
    }
  }
}

}  // namespace

void sigmoid_cross_entropy(int64_t count, const float* logits, const float* targets,
                           float* dlogits, double* loss, const Exec& ex) {
  if (count <= 0) return;
  const cudaStream_t stream = stream_of(ex);
  const float inv_count = 1.0f / static_cast<float>(count);  // as the CPU forms it
  sigmoid_xent_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, inv_count, logits, targets, dlogits, ex.workspace);
  check_launch("sigmoid_xent_kernel");
  mean_of(count, ex.workspace, loss, stream);
}

void regression_loss(const RegressionLoss& r, int64_t count, const float* y,
                     const float* targets, float* dy, double* loss, const Exec& ex) {
  if (count <= 0) return;
  const cudaStream_t stream = stream_of(ex);
  const float inv_count = 1.0f / static_cast<float>(count);
  regression_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      r, count, inv_count, y, targets, dy, ex.workspace);
  check_launch("regression_kernel");
  mean_of(count, ex.workspace, loss, stream);
}

}  // namespace fastnn::cuda
