// ops_host.h — fastnn.ops(device='cuda'): each op on host arrays, run on the GPU (copy
// in, launch, copy out, synchronise), so every CUDA kernel can be tested alone. Plain
// C++ types only: bindings.cpp includes this without the CUDA headers.
#pragma once

#include <cstdint>

#include "ops.h"

namespace fastnn::cuda::host {

// Throws (RuntimeError in Python) when this process sees no CUDA GPU.
void require_device();

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                    bool relu, float* y);
void conv2d_backward(const Conv2dGeometry& g, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db);
// C = op(A)·op(B) (+ bias, ReLU): host pointers in g, sizes from its shapes.
void gemm(const Gemm& g);
// dx = dy·wᵀ, dw = xᵀ·dy, db = Σ_rows dy.
void dense_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* w,
                    const float* dy, float* dx, float* dw, float* db);
void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y);
void maxpool2d_backward(const Pool2dGeometry& g, const float* x, const float* dy, float* dx);
void relu_forward(int64_t count, const float* x, float* y);
void relu_backward(int64_t count, const float* x, const float* dy, float* dx);
double softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                             const int32_t* labels, float* dlogits);
void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step);

}  // namespace fastnn::cuda::host
