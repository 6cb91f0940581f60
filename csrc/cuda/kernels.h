// kernels.h — the CUDA backend: ops.h's kernels on device pointers, launched on the
// stream in Exec::stream (one file per op family, forward and backward together), plus
// the GPU engine's resident kernels that read the step from a TrainState. Each function
// checks its launch (cudaGetLastError) and throws CudaError naming the kernel; none
// synchronises. Reductions run in a fixed order (no float atomics), so the same inputs
// give the same bits every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops.h"

namespace fastnn::cuda {

// The resident training loop's state, in device memory (cuda_net.cu). The host writes it
// by value before a run of steps (set_train_state); each step's kernels read it, and the
// step's last kernel advances it, so one captured CUDA graph serves every step.
struct TrainState {
  const float* x;          // the dataset: samples × sample_floats, resident
  const float* targets;    // target_width floats per sample (plan.h's LossSpec); null for predict
  int64_t samples, sample_floats, target_width, batch;
  uint64_t shuffle_key;
  int32_t shuffled;
  int32_t training;        // finish_step: mean loss and advance `iteration`, or summed loss
  int64_t step;            // this step's index in the epoch: rows step·batch … of the order
  int64_t iteration;       // optimizer steps taken (Adam's t − 1; the dropout counter)
  double learning_rate;
  double* step_loss;       // per step of the epoch: mean loss (training) or summed loss
  int32_t* step_correct;   // per step: samples (or outputs) counted correct
  float* outputs;          // predict: row r of the epoch at outputs[r − outputs_first_row]
  int64_t outputs_first_row;
};

// ---- ops.h's kernels (kernel_table.cu gathers them into cuda::kernels) ------------------
#define FASTNN_DECLARE_KERNEL(name, params) void name params;
FASTNN_KERNELS(FASTNN_DECLARE_KERNEL)
#undef FASTNN_DECLARE_KERNEL
// conv2d.cu: the filter gradient's two-pass workspace, valid for any batch up to g.n.
int64_t conv2d_workspace(const Conv2dGeometry& g, int threads);
// batchnorm.cu: the per-channel reductions' partial sums.
int64_t batchnorm_workspace(const BatchNormGeometry& g, int threads);

extern const Kernels kernels;

inline cudaStream_t stream_of(const Exec& ex) { return static_cast<cudaStream_t>(ex.stream); }

// ---- the GPU engine's resident kernels ------------------------------------------------

// optimizer.cu — Adam and SGD reading the step number and learning rate from
// TrainState, so a graph can replay them.
void adam_update_resident(int64_t count, float* param, const float* grad, float* m, float* v,
                          double beta_1, double beta_2, double epsilon, const TrainState* state,
                          cudaStream_t stream);
void sgd_update_resident(int64_t count, float* param, const float* grad, float* velocity,
                         float momentum, bool nesterov, const TrainState* state,
                         cudaStream_t stream);

// activation.cu (cont.) — dropout with the CPU's coins (ops.h DropoutStep): the stream of
// layer_stream + iteration, the iteration read from TrainState. The backward recomputes
// the coins rather than storing a mask.
void dropout_forward_resident(int64_t count, const float* x, float* y, uint32_t threshold,
                              float scale, uint64_t layer_stream, const TrainState* state,
                              cudaStream_t stream);
void dropout_backward_resident(int64_t count, const float* dy, float* dx, uint32_t threshold,
                               float scale, uint64_t layer_stream, const TrainState* state,
                               cudaStream_t stream);

// augment.cu (cont.) — the training-time augmentation with the coins of stream
// splitmix64(s.stream + iteration), the iteration read from TrainState (as dropout's).
void augment_resident(const AugmentStep& s, const float* x, float* y, const TrainState* state,
                      cudaStream_t stream);

// softmax_xent.cu (cont.) — row-wise softmax (or a copy, for logits) of `rows` rows into
// state->outputs at the current step's rows.
void predict_outputs(int64_t rows, int64_t classes, const float* logits, bool softmax,
                     const TrainState* state, cudaStream_t stream);
// The mean of `count` floats into *mean (double), one block in a fixed order: every loss
// kernel's last step.
void mean_of(int64_t count, const float* values, double* mean, cudaStream_t stream);

// Accuracy kinds of finish_step (plan.h's LossSpec::Accuracy).
constexpr int kAccuracyNone = 0, kAccuracyArgmax = 1, kAccuracyBinary = 2;

// train.cu — the resident step's bookkeeping.
void set_train_state(TrainState* state, const TrainState& value, cudaStream_t stream);
// The current step's `rows` samples (shuffle_index order when shuffled) into x and their
// targets into `targets` (unless null).
void gather_batch(const TrainState* state, int64_t rows, int64_t sample_floats,
                  int64_t target_width, float* x, float* targets, cudaStream_t stream);
// Records the step (loss from *mean_loss unless null, the correct count by `accuracy` when
// targets is non-null, as the CPU engine's count_correct) at state->step, then advances
// step (and iteration when training).
void finish_step(TrainState* state, int64_t rows, int64_t classes, const float* outputs,
                 const float* targets, int64_t target_width, int accuracy,
                 const double* mean_loss, cudaStream_t stream);

}  // namespace fastnn::cuda
