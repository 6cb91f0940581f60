// walk.h — the per-layer walk of a step, shared by both engines: which kernel of the
// backend's table (ops.h) each layer runs, on which buffers, forward and backward. An
// engine supplies its table, its buffers and a Hooks object for what only it does:
//   output(i), argmax(i)        layer i's own output buffer and max-pool argmax;
//   out(i), set_out(i, p)       this step's output of layer i (its buffer or an alias);
//   fused(i), fused_forward(i, in, n, ex), fused_backward(i, in, dy, dx, n, ex)
//                               layer i (a conv) and i + 1 (its max-pool) run as one
//                               (the CPU's chunked pair; the GPU fuses nothing);
//   dropout_forward(i, in, y, n, ex), dropout_backward(i, d, n, ex)
//                               the engine's coins (a stored mask, or recomputed on the GPU);
//   begin(), forward_done(i), backward_done(i)    per-layer timing (the CPU's).
// Backward: two ping-pong gradient buffers; a fused ReLU is undone by masking with the
// layer's output (relu(z) > 0 exactly when z > 0), inside the pooling gradient when a
// max-pool follows it; the first layer skips its input gradient.
#pragma once

#include <cstdint>

#include "engine/plan.h"
#include "ops.h"

namespace fastnn {

// Parameters, gradients and gradient buffers, in the backend's memory.
struct StepBuffers {
  const float* params;
  float* grads;
  float* grad_a;        // the loss's gradient arrives here; ping-pong with grad_b
  float* grad_b;
  float* scratch_bias;  // the db of a layer without a bias
};

// Runs the layers on the batch x of n samples; returns the last layer's output.
template <class Hooks>
const float* forward_walk(const Plan& plan, const Kernels& k, const Exec& ex,
                          const StepBuffers& b, const float* x, int64_t n, bool training,
                          Hooks& h) {
  const float* in = x;
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const PlannedLayer& layer = plan.layers[i];
    const LayerSpec& spec = layer.spec;
    if (h.fused(i)) {
      h.fused_forward(i, in, n, ex);
      in = h.out(++i);
      continue;
    }
    h.begin();
    float* y = h.output(i);
    const bool relu = spec.activation == Activation::Relu;
    const float* bias = layer.bias >= 0 ? b.params + layer.bias : nullptr;
    switch (spec.kind) {
      case LayerSpec::Kind::Conv2d:
        k.conv2d_forward(conv_geometry(layer, n), in, b.params + layer.kernel, bias, relu, y, ex);
        break;
      case LayerSpec::Kind::MaxPool2d:
        k.maxpool2d_forward(pool_geometry(layer, n), in, y, h.argmax(i), ex);
        break;
      case LayerSpec::Kind::Flatten:
        y = const_cast<float*>(in);  // NHWC flattened in C order is the same memory
        break;
      case LayerSpec::Kind::Dense:
        k.gemm(dense_forward_gemm(layer, n, in, b.params + layer.kernel, bias, y), ex);
        break;
      case LayerSpec::Kind::Dropout:
        if (!training || spec.rate == 0.0) {
          y = const_cast<float*>(in);  // the identity outside training
        } else {
          h.dropout_forward(i, in, y, n, ex);
        }
        break;
    }
    h.set_out(i, y);
    in = y;
    h.forward_done(i);
  }
  return in;
}

// Gradients of every parameter from the loss's gradient in b.grad_a (the last forward_walk
// on x must have run).
template <class Hooks>
void backward_walk(const Plan& plan, const Kernels& k, const Exec& ex, const StepBuffers& b,
                   const float* x, int64_t n, Hooks& h) {
  float* d = b.grad_a;     // gradient of the loss wrt the current layer's output
  bool relu_done = false;  // a max-pool above already masked d by this layer's ReLU
  for (size_t i = plan.layers.size(); i-- > 0;) {
    const PlannedLayer& layer = plan.layers[i];
    const LayerSpec& spec = layer.spec;
    const float* in = i == 0 ? x : h.out(i - 1);
    const bool need_dx = i > 0;
    const bool input_from_relu = i > 0 && plan.layers[i - 1].spec.activation == Activation::Relu;
    float* other = d == b.grad_a ? b.grad_b : b.grad_a;
    if (spec.kind == LayerSpec::Kind::MaxPool2d && i > 0 && h.fused(i - 1)) {
      const float* conv_in = i == 1 ? x : h.out(i - 2);
      h.fused_backward(i - 1, conv_in, d, i > 1 ? other : nullptr, n, ex);
      d = other;
      relu_done = false;
      --i;
      continue;
    }
    h.begin();
    if (spec.activation == Activation::Relu && !relu_done) {
      k.relu_backward(n * layer.out_size, h.out(i), d, d, ex);
    }
    relu_done = false;
    float* db = layer.bias >= 0 ? b.grads + layer.bias : b.scratch_bias;
    switch (spec.kind) {
      case LayerSpec::Kind::Conv2d: {
        const Conv2dGeometry g = conv_geometry(layer, n);
        k.conv2d_backward_filter(g, in, d, b.grads + layer.kernel, db, false, ex);
        if (need_dx) k.conv2d_backward_data(g, b.params + layer.kernel, d, other, ex);
        d = other;
        break;
      }
      case LayerSpec::Kind::MaxPool2d:
        if (need_dx) {
          k.maxpool2d_backward(pool_geometry(layer, n), d, h.argmax(i),
                               input_from_relu ? h.out(i) : nullptr, other, ex);
          relu_done = input_from_relu;
        }
        d = other;
        break;
      case LayerSpec::Kind::Flatten:
        break;
      case LayerSpec::Kind::Dense:
        k.gemm(dense_filter_gemm(layer, n, in, d, b.grads + layer.kernel), ex);
        if (layer.bias >= 0) k.sum_rows(n, spec.units, d, db, ex);
        if (need_dx) k.gemm(dense_data_gemm(layer, n, d, b.params + layer.kernel, other), ex);
        d = other;
        break;
      case LayerSpec::Kind::Dropout:
        if (h.out(i) != in) h.dropout_backward(i, d, n, ex);  // active this step
        break;
    }
    h.backward_done(i);
  }
}

}  // namespace fastnn
