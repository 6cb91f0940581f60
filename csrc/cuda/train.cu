// train.cu — the bookkeeping of a resident training step (cuda_net.cu): setting the
// TrainState, gathering the step's batch from the resident dataset in the epoch's
// shuffle_index order (ops.h), and recording the step's loss and correct count in its slot.
#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

__global__ void set_train_state_kernel(TrainState* state, TrainState value) { *state = value; }

// One thread per float of the batch; a row's threads agree on its source sample.
__global__ void gather_batch_kernel(const TrainState* __restrict__ state, int64_t rows,
                                    float* __restrict__ x, float* __restrict__ labels) {
  const TrainState s = *state;
  const int64_t count = rows * s.sample_floats;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const int64_t row = i / s.sample_floats, column = i - row * s.sample_floats;
    const uint64_t position = static_cast<uint64_t>(s.step * s.batch + row);
    const int64_t source = static_cast<int64_t>(
        s.shuffled ? shuffle_index(s.shuffle_key, position, static_cast<uint64_t>(s.samples))
                   : position);
    x[i] = s.x[source * s.sample_floats + column];
    if (column == 0 && labels != nullptr && s.labels != nullptr) labels[row] = s.labels[source];
  }
}

constexpr int kFinishThreads = 256;

// One block: thread t checks rows t, t + 256, …; the counts are integers, so their sum
// is exact in any order. The first maximum wins, as on the CPU (std::max_element).
__global__ void finish_step_kernel(TrainState* state, int64_t rows, int64_t classes,
                                   const float* __restrict__ logits,
                                   const float* __restrict__ labels,
                                   const double* __restrict__ mean_loss) {
  __shared__ int counts[kFinishThreads];
  int correct = 0;
  if (labels != nullptr) {
    for (int64_t r = threadIdx.x; r < rows; r += kFinishThreads) {
      const float* row = logits + r * classes;
      int64_t top = 0;
      for (int64_t j = 1; j < classes; ++j) {
        if (row[j] > row[top]) top = j;
      }
      correct += top == static_cast<int64_t>(labels[r]);
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
    if (labels != nullptr) state->step_correct[step] = counts[0];
    state->step = step + 1;
    if (state->training) state->iteration += 1;
  }
}

}  // namespace

void set_train_state(TrainState* state, const TrainState& value, cudaStream_t stream) {
  set_train_state_kernel<<<1, 1, 0, stream>>>(state, value);
  check_launch("set_train_state_kernel");
}

void gather_batch(const TrainState* state, int64_t rows, int64_t sample_floats, float* x,
                  float* labels, cudaStream_t stream) {
  gather_batch_kernel<<<grid_blocks(rows * sample_floats), kGridThreads, 0, stream>>>(
      state, rows, x, labels);
  check_launch("gather_batch_kernel");
}

void finish_step(TrainState* state, int64_t rows, int64_t classes, const float* logits,
                 const float* labels, const double* mean_loss, cudaStream_t stream) {
  finish_step_kernel<<<1, kFinishThreads, 0, stream>>>(state, rows, classes, logits, labels,
                                                       mean_loss);
  check_launch("finish_step_kernel");
}

}  // namespace fastnn::cuda
