// loss.cu — the element-wise losses with the CPU code's formulas (cpu/loss.cpp): sigmoid
// + binary cross-entropy on logits, and the regression losses (squared, absolute, Huber).
// One grid-stride launch writes each element's gradient and loss; a one-block kernel
// takes the mean of the losses in double, in a fixed shape, so the bits never vary.
// (The categorical cross-entropy, a softmax per row, is in softmax_xent.cu.)
#include <cmath>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kGridThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;

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

// Butterfly sum: lanes i and i^offset add the same two values, so all end with the same
// bits.
__device__ double warp_sum(double value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullMask, value, offset);
  }
  return value;
}

// One block: thread t sums elements t, t + kGridThreads, ... in order, then the partials
// combine by warp butterflies and in warp order — a fixed shape for a given count.
__global__ void mean_kernel(int64_t count, const float* losses, double* loss) {
  __shared__ double warp_totals[kWarpsPerBlock];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kGridThreads) sum += losses[i];
  sum = warp_sum(sum);
  if (threadIdx.x % kWarp == 0) warp_totals[threadIdx.x / kWarp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kWarpsPerBlock; ++w) total += warp_totals[w];
    *loss = total / static_cast<double>(count);
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
  mean_kernel<<<1, kGridThreads, 0, stream>>>(count, ex.workspace, loss);
  check_launch("mean_kernel");
}

void regression_loss(const RegressionLoss& r, int64_t count, const float* y,
                     const float* targets, float* dy, double* loss, const Exec& ex) {
  if (count <= 0) return;
  const cudaStream_t stream = stream_of(ex);
  const float inv_count = 1.0f / static_cast<float>(count);
  regression_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      r, count, inv_count, y, targets, dy, ex.workspace);
  check_launch("regression_kernel");
  mean_kernel<<<1, kGridThreads, 0, stream>>>(count, ex.workspace, loss);
  check_launch("mean_kernel");
}

}  // namespace fastnn::cuda
