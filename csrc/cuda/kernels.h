// kernels.h — the CUDA backend's op interface: the same ops and geometry structs as the
// CPU's (ops.h), on device pointers, launched on a stream. Each function checks its
// launch (cudaGetLastError) and throws CudaError naming the kernel; it does not
// synchronise. Reductions run in a fixed order (no float atomics), so the same inputs
// give the same bits every run. One file per op family, forward and backward together.
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
  const int32_t* labels;   // null for predict
  int64_t samples, sample_floats, batch;
  uint64_t shuffle_key;
  int32_t shuffled;
  int32_t training;        // finish_step: mean loss and advance `iteration`, or summed loss
  int64_t step;            // this step's index in the epoch: rows step·batch … of the order
  int64_t iteration;       // optimizer steps taken (Adam's t − 1; the dropout counter)
  double learning_rate;
  double* step_loss;       // per step of the epoch: mean loss (training) or summed loss
  int32_t* step_correct;   // per step: rows whose first maximum is the label
  float* outputs;          // predict: row r of the epoch at outputs[r − outputs_first_row]
  int64_t outputs_first_row;
};

// gemm.cu — C = op(A)·op(B) with Gemm's epilogue (accumulate, bias, ReLU); shared-memory
// tiles and a register-blocked thread tile. sum_rows: out[j] = Σ_i x[i, j].
void gemm(const Gemm& g, cudaStream_t stream);
void sum_rows(int64_t rows, int64_t cols, const float* x, float* out, cudaStream_t stream);

// conv2d.cu — NHWC × HWIO as implicit GEMM (no im2col in memory); bias and ReLU fused
// into the forward. The filter gradient sums over the batch in two fixed-order passes
// through `workspace` (conv2d_filter_workspace_floats(g) floats).
void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                    bool relu, float* y, cudaStream_t stream);
void conv2d_backward_data(const Conv2dGeometry& g, const float* w, const float* dy, float* dx,
                          cudaStream_t stream);
int64_t conv2d_filter_workspace_floats(const Conv2dGeometry& g);
void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* dy,
                            float* dw, float* db, float* workspace, cudaStream_t stream);

// pool.cu — max-pooling with its argmax (window index, first maximum wins), and the
// gradient gathered per input element (no scatter, no atomics); relu_y as in ops.h.
void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax,
                       cudaStream_t stream);
void maxpool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                        const float* relu_y, float* dx, cudaStream_t stream);

// activation.cu
void relu_forward(int64_t count, const float* x, float* y, cudaStream_t stream);
void relu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   cudaStream_t stream);

// softmax_xent.cu — fused, one row per warp; *loss (a device float) is the mean over the
// rows, summed in row order. workspace: n floats.
void softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                           const int32_t* labels, float* dlogits, float* loss, float* workspace,
                           cudaStream_t stream);

// optimizer.cu — Adam over a flat parameter array in one launch. The *_resident forms
// read the step number and learning rate from TrainState, so a graph can replay them.
void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, cudaStream_t stream);
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

// softmax_xent.cu (cont.) — row-wise softmax (or a copy, for logits) of `rows` rows into
// state->outputs at the current step's rows.
void predict_outputs(int64_t rows, int64_t classes, const float* logits, bool softmax,
                     const TrainState* state, cudaStream_t stream);

// train.cu — the resident step's bookkeeping.
void set_train_state(TrainState* state, const TrainState& value, cudaStream_t stream);
// The current step's `rows` samples (shuffle_index order when shuffled) into x and labels.
void gather_batch(const TrainState* state, int64_t rows, int64_t sample_floats, float* x,
                  int32_t* labels, cudaStream_t stream);
// Records the step (loss from *mean_loss unless null, correct count when labels is
// non-null) at state->step, then advances step (and iteration when training).
void finish_step(TrainState* state, int64_t rows, int64_t classes, const float* logits,
                 const int32_t* labels, const float* mean_loss, cudaStream_t stream);

}  // namespace fastnn::cuda
