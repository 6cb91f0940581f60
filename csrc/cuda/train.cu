// train.cu — the bookkeeping of a resident training step (cuda_net.cu): setting the
// TrainState, gathering the step's batch from the resident dataset in the epoch's
// shuffle_index order (ops.h), and recording the step's loss and correct count in its slot.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

__global__ void set_train_state_kernel(TrainState* state, TrainState value) { *state = value; }

// One thread per float of the batch; a row's threads agree on its source sample.
__device__ int64_t source_row(const TrainState& s, int64_t row) {
  const uint64_t position = static_cast<uint64_t>(s.step * s.batch + row);
  return static_cast<int64_t>(
      s.shuffled ? shuffle_index(s.shuffle_key, position, static_cast<uint64_t>(s.samples))
                 : position);
}

__global__ void gather_batch_kernel(const TrainState* __restrict__ state, int64_t rows,
                                    float* __restrict__ x, float* __restrict__ targets) {
  const TrainState s = *state;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < rows * s.sample_floats; i += stride) {
    const int64_t row = i / s.sample_floats, column = i - row * s.sample_floats;
    x[i] = s.x[source_row(s, row) * s.sample_floats + column];
  }
  if (targets == nullptr || s.targets == nullptr) return;
  for (int64_t i = first; i < rows * s.target_width; i += stride) {
    const int64_t row = i / s.target_width, column = i - row * s.target_width;
    targets[i] = s.targets[source_row(s, row) * s.target_width + column];
  }
}

constexpr int kFinishThreads = 256;

// The first maximum of a row, as std::max_element.
__device__ int64_t first_max(const float* row, int64_t count) {
  int64_t top = 0;
  for (int64_t j = 1; j < count; ++j) {
    if (row[j] > row[top]) top = j;
  }
  return top;
}

// One block: thread t checks rows (or outputs) t, t + 256, …; the counts are integers, so
// their sum is exact in any order.
__global__ void finish_step_kernel(TrainState* state, int64_t rows, int64_t classes,
                                   const float* __restrict__ outputs,
                                   const float* __restrict__ targets, int64_t width,
                                   int accuracy, const double* __restrict__ mean_loss) {
  __shared__ int counts[kFinishThreads];
  int correct = 0;
  if (targets != nullptr && accuracy == kAccuracyArgmax) {
    for (int64_t r = threadIdx.x; r < rows; r += kFinishThreads) {
      const float* target = targets + r * width;
      const int64_t label = width == 1 ? static_cast<int64_t>(target[0]) : first_max(target, width);
      correct += first_max(outputs + r * classes, classes) == label;
    }
  } else if (targets != nullptr && accuracy == kAccuracyBinary) {
    for (int64_t j = threadIdx.x; j < rows * classes; j += kFinishThreads) {
      correct += (outputs[j] > 0.5f) == (targets[j] > 0.5f);
    }
  }
  counts[threadIdx.x] = correct;
  __syncthreads();
  for (int half = kFinishThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) counts[threadIdx.x] += counts[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int64_t step = state->step;
    if (mean_loss != nullptr) {
      const double mean = *mean_loss;
      state->step_loss[step] = state->training ? mean : mean * static_cast<double>(rows);
    }
    if (targets != nullptr) state->step_correct[step] = counts[0];
    state->step = step + 1;
    if (state->training) state->iteration += 1;
  }
}

}  // namespace

void set_train_state(TrainState* state, const TrainState& value, cudaStream_t stream) {
  set_train_state_kernel<<<1, 1, 0, stream>>>(state, value);
  check_launch("set_train_state_kernel");
}

void gather_batch(const TrainState* state, int64_t rows, int64_t sample_floats,
                  int64_t target_width, float* x, float* targets, cudaStream_t stream) {
  const int64_t most = rows * std::max(sample_floats, target_width);
  gather_batch_kernel<<<grid_blocks(most), kGridThreads, 0, stream>>>(state, rows, x, targets);
  check_launch("gather_batch_kernel");
}

void finish_step(TrainState* state, int64_t rows, int64_t classes, const float* outputs,
                 const float* targets, int64_t target_width, int accuracy,
                 const double* mean_loss, cudaStream_t stream) {
  finish_step_kernel<<<1, kFinishThreads, 0, stream>>>(state, rows, classes, outputs, targets,
                                                       target_width, accuracy, mean_loss);
  check_launch("finish_step_kernel");
}

}  // namespace fastnn::cuda
