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

// optimizer.cu — Adam over a flat parameter array in one launch.
void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, cudaStream_t stream);

}  // namespace fastnn::cuda
