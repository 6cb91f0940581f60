// softmax_xent.cu — softmax + cross-entropy fused, one warp per row: loss_i =
// log1p(others) + (max − z[label]), dz = (softmax − onehot) / n, and its form for any
// targets (categorical_cross_entropy), with the CPU code's formulas (see
// cpu/softmax_xent.cpp). A second one-block kernel takes the mean of the row losses in
// double. Every reduction has a fixed shape, so the bits never vary. (The element-wise
// losses, sigmoid and regression, are in loss.cu.)
#include <algorithm>
#include <cmath>

#include "cuda/check.h"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;
// Enough blocks to fill every SM of an H200 a few times over; the grid-stride loop covers
// the rest, so the grid stays within CUDA's limits for any n.
constexpr int64_t kMaxBlocks = 4096;

// Butterfly sum: at every step lanes i and i^offset add the same two values (a + b and
// b + a round alike), so all lanes end with the same bits.
template <class T>
__device__ T warp_sum(T value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullMask, value, offset);
  }
  return value;
}

// The first maximum of row z, on every lane of the warp: each lane scans its columns in
// ascending order (strict >), then the lanes' candidates combine by (larger value, then
// smaller index), a total order for finite logits, so every lane agrees on the CPU's
// `top`. A lane with no column keeps (-inf, classes), which loses to any column.
__device__ void row_first_max(const float* z, int64_t classes, int lane, float* max_out,
                              int64_t* top_out) {
  float max = -INFINITY;
  int64_t top = classes;
  for (int64_t j = lane; j < classes; j += kWarp) {
    const float v = z[j];
    if (j == lane || v > max) {
      max = v;
      top = j;
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const float other_max = __shfl_xor_sync(kFullMask, max, offset);
    const int64_t other_top = __shfl_xor_sync(kFullMask, top, offset);
    if (other_max > max || (other_max == max && other_top < top)) {
      max = other_max;
      top = other_top;
    }
  }
  *max_out = max;
  *top_out = top;
}

// Row losses go to row_loss[row]. Rows are warp-uniform, so every lane of a warp reaches
// each full-mask shuffle. logits and dlogits must not overlap (as on the CPU).
__global__ void softmax_xent_rows_kernel(int64_t n, int64_t classes, float inv_n,
                                         const float* logits, const float* labels,
                                         float* dlogits, float* row_loss) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       row < n; row += warps) {
    const float* z = logits + row * classes;
    float* dz = dlogits + row * classes;

    float max;
    int64_t top;
    row_first_max(z, classes, lane, &max, &top);

    // others = Σ_{j≠top} e_j (the sum is 1 + others, so the loss can use log1p) and
    // rest = Σ_{j≠label} e_j (softmax − 1 at the label, summed directly: as p − 1 it
    // would round to 0 for a confident row).
    const auto label = static_cast<int64_t>(labels[row]);
    float others = 0.0f, rest = 0.0f;
    for (int64_t j = lane; j < classes; j += kWarp) {
      const float e = expf(z[j] - max);
      if (j != top) others += e;
      if (j != label) rest += e;
    }
    others = warp_sum(others);
    rest = warp_sum(rest);

    // e_j is recomputed rather than stored: expf is deterministic, and a second read of z
    // costs less than writing e to dz and reading it back.
    const float scale = inv_n / (1.0f + others);
    for (int64_t j = lane; j < classes; j += kWarp) {
      dz[j] = (j == label ? -rest : expf(z[j] - max)) * scale;
    }
    if (lane == 0) row_loss[row] = log1pf(others) + (max - z[label]);
  }
}

// Any targets t, as cpu/softmax_xent.cpp forms it: loss_i = T·log1p(others) +
// Σ_j t_j·(max − z_j) with T = Σ_j t_j, both sums and the differences in double, and
// dz_j = (e_j·(T − t_j) − t_j·S₋ⱼ)/(S·n), S₋ⱼ = others where e_j = 1, else S − e_j.
__global__ void categorical_xent_rows_kernel(int64_t n, int64_t classes, float inv_n,
                                             const float* logits, const float* targets,
                                             float* dlogits, float* row_loss) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       row < n; row += warps) {
    const float* z = logits + row * classes;
    const float* t = targets + row * classes;
    float* dz = dlogits + row * classes;

    float max;
    int64_t top;
    row_first_max(z, classes, lane, &max, &top);

    float others = 0.0f;
    double total_t = 0.0, shifted = 0.0;
    for (int64_t j = lane; j < classes; j += kWarp) {
      if (j != top) others += expf(z[j] - max);
      total_t += t[j];
      shifted += static_cast<double>(t[j]) * (static_cast<double>(max) - z[j]);
    }
    others = warp_sum(others);
    total_t = warp_sum(total_t);
    shifted = warp_sum(shifted);

    const float sum = 1.0f + others;
    const float scale = inv_n / sum;
    for (int64_t j = lane; j < classes; j += kWarp) {
      const float e = expf(z[j] - max);
      const float others_e = e == 1.0f ? others : sum - e;
      const auto others_t = static_cast<float>(total_t - t[j]);
      dz[j] = (e * others_t - t[j] * others_e) * scale;
    }
    if (lane == 0) row_loss[row] = static_cast<float>(total_t * log1pf(others) + shifted);
  }
}

// One block of kThreads: thread t sums rows t, t + kThreads, ... in order, then the
// partials combine by warp butterflies and warp order — a fixed shape for a given n.
__global__ void mean_loss_kernel(int64_t n, const float* row_loss, double* loss) {
  __shared__ double warp_totals[kWarpsPerBlock];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) sum += row_loss[i];
  sum = warp_sum(sum);
  if (threadIdx.x % kWarp == 0) warp_totals[threadIdx.x / kWarp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kWarpsPerBlock; ++w) total += warp_totals[w];
    *loss = total / static_cast<double>(n);
  }
}

// One row's softmax by one warp, as the training kernel forms it (the first maximum's
// term is 1, the rest sum to `others`).
__device__ void softmax_row(const float* z, float* p, int64_t classes, int lane) {
  float max;
  int64_t top;
  row_first_max(z, classes, lane, &max, &top);
  float others = 0.0f;
  for (int64_t j = lane; j < classes; j += kWarp) {
    if (j != top) others += expf(z[j] - max);
  }
  others = warp_sum(others);
  const float inv = 1.0f / (1.0f + others);
  for (int64_t j = lane; j < classes; j += kWarp) p[j] = expf(z[j] - max) * inv;
}

__global__ void softmax_kernel(int64_t n, int64_t classes, const float* logits, float* probs) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       row < n; row += warps) {
    softmax_row(logits + row * classes, probs + row * classes, classes, lane);
  }
}

// Predictions of the current step's rows: their softmax, or the logits copied.
__global__ void predict_outputs_kernel(int64_t rows, int64_t classes, const float* logits,
                                       bool softmax, const TrainState* __restrict__ state) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  float* outputs =
      state->outputs + (state->step * state->batch - state->outputs_first_row) * classes;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       row < rows; row += warps) {
    const float* z = logits + row * classes;
    float* p = outputs + row * classes;
    if (softmax) {
      softmax_row(z, p, classes, lane);
    } else {
      for (int64_t j = lane; j < classes; j += kWarp) p[j] = z[j];
    }
  }
}

// Blocks for one warp per row, capped (the kernels' loops cover the rest).
int row_blocks(int64_t rows) {
  return static_cast<int>(
      std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxBlocks));
}

}  // namespace

void mean_of(int64_t count, const float* values, double* mean, cudaStream_t stream) {
  mean_loss_kernel<<<1, kThreads, 0, stream>>>(count, values, mean);
  check_launch("mean_loss_kernel");
}

void predict_outputs(int64_t rows, int64_t classes, const float* logits, bool softmax,
                     const TrainState* state, cudaStream_t stream) {
  if (rows <= 0 || classes <= 0) return;
  predict_outputs_kernel<<<row_blocks(rows), kThreads, 0, stream>>>(rows, classes, logits,
                                                                    softmax, state);
  check_launch("predict_outputs_kernel");
}

void softmax(int64_t n, int64_t classes, const float* logits, float* probs, const Exec& ex) {
  if (n <= 0 || classes <= 0) return;
  softmax_kernel<<<row_blocks(n), kThreads, 0, stream_of(ex)>>>(n, classes, logits, probs);
  check_launch("softmax_kernel");
}

void softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                           const float* labels, float* dlogits, double* loss, const Exec& ex) {
  if (n <= 0 || classes <= 0) return;
  const cudaStream_t stream = stream_of(ex);
  const float inv_n = 1.0f / static_cast<float>(n);  // as the CPU forms it
  softmax_xent_rows_kernel<<<row_blocks(n), kThreads, 0, stream>>>(n, classes, inv_n, logits,
                                                                   labels, dlogits, ex.workspace);
  check_launch("softmax_xent_rows_kernel");
  mean_of(n, ex.workspace, loss, stream);
}

void categorical_cross_entropy(int64_t n, int64_t classes, const float* logits,
                               const float* targets, float* dlogits, double* loss,
                               const Exec& ex) {
  if (n <= 0 || classes <= 0) return;
  const cudaStream_t stream = stream_of(ex);
  const float inv_n = 1.0f / static_cast<float>(n);
  categorical_xent_rows_kernel<<<row_blocks(n), kThreads, 0, stream>>>(
      n, classes, inv_n, logits, targets, dlogits, ex.workspace);
  check_launch("categorical_xent_rows_kernel");
  mean_of(n, ex.workspace, loss, stream);
}

}  // namespace fastnn::cuda
