// walk.h — the per-layer walk of a step, shared by both engines: which kernel of the
// backend's table (ops.h) each layer runs, on which buffers, forward and backward, and the
// loss that starts the backward. A layer is its operation, then its activation (plan.h).
// An engine supplies its table, its buffers and a Hooks object for what only it does:
//   output(i), pre(i), argmax(i)  layer i's own output, pre-activation (keeps_pre) and
//                               max-pool argmax buffers;
//   mean(i), inv_std(i)         a batch norm's statistics of this step (for its backward);
//   folded(i)                   room for layer i's kernel and bias with the batch norm after
//                               it folded in (folds_norm, at inference);
//   out(i), set_out(i, p)       this step's output of layer i (its buffer or an alias);
//   fused(i), fused_forward(i, in, n, ex), fused_backward(i, in, dy, dx, n, ex)
//                               layer i (a conv) and i + 1 (its max-pool) run as one
//                               (the CPU's chunked pair; the GPU fuses nothing);
//   dropout_forward(i, in, y, n, ex), dropout_backward(i, d, n, ex)
//                               the engine's coins (a stored mask, or recomputed on the GPU);
//   augment(i, in, y, n, ex)    a training step's augmentation, with the engine's coins;
//   begin(), forward_done(i), backward_done(i)    per-layer timing (the CPU's).
// Backward: two ping-pong gradient buffers; an activation's gradient is taken in place; a
// ReLU is undone by masking with the layer's output (relu(z) > 0 exactly when z > 0),
// inside the pooling gradient when a max-pool follows it; the first layer skips its input
// gradient; a head fused with the loss starts from the loss's gradient wrt its logits.
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

// What layer i's activation reads: its own pre-activation buffer, or an Activation
// layer's input.
template <class Hooks>
const float* pre_activation(const Plan& plan, Hooks& h, const float* x, size_t i) {
  if (plan.layers[i].spec.kind == LayerSpec::Kind::Activation) return i == 0 ? x : h.out(i - 1);
  return plan.layers[i].keeps_pre ? h.pre(i) : h.out(i);
}

// y = activation(z) for n samples of layer `layer` (in place when z == y).
inline void activation_forward(const PlannedLayer& layer, const Kernels& k, const Exec& ex,
                               const float* z, float* y, int64_t n) {
  const ActivationSpec& a = layer.spec.activation;
  switch (a.kind) {
    case Act::Linear:
      return;
    case Act::Relu:
      k.relu_forward(n * layer.out_size, z, y, ex);
      return;
    case Act::Softmax:
      k.softmax(layer.rows(n), layer.channels(), z, y, ex);
      return;
    default:
      k.activation_forward(a, n * layer.out_size, z, y, ex);
  }
}

// Inference of conv/dense layer i and the batch norm i + 1 as one layer: the kernel and
// bias scaled by the norm's moving statistics, the norm's ReLU in the epilogue, straight
// into the norm's output.
template <class Hooks>
const float* folded_forward(const Plan& plan, const Kernels& k, const Exec& ex,
                            const StepBuffers& b, const float* in, int64_t n, size_t i,
                            Hooks& h) {
  const PlannedLayer& layer = plan.layers[i];
  const PlannedLayer& norm = plan.layers[i + 1];
  h.begin();
  BatchNormGeometry g{};
  g.channels = layer.spec.units;
  g.rows = kernel_rows(layer);
  g.epsilon = static_cast<float>(norm.spec.epsilon);
  float* kernel = h.folded(i);  // kernel_rows × units, then units of bias
  float* bias = kernel + g.rows * g.channels;
  auto param = [&](int64_t offset) { return offset >= 0 ? b.params + offset : nullptr; };
  k.batchnorm_fold(g, b.params + layer.kernel, param(layer.bias), param(norm.kernel),
                   param(norm.bias), b.params + norm.moving_mean, b.params + norm.moving_variance,
                   kernel, bias, ex);
  float* y = h.output(i + 1);
  const bool relu = norm.spec.activation.kind == Act::Relu;
  if (layer.spec.kind == LayerSpec::Kind::Conv2d) {
    k.conv2d_forward(conv_geometry(layer, n), in, kernel, bias, relu, y, ex);
  } else {
    Gemm mm = dense_forward_gemm(layer, n, in, kernel, bias, y);
    mm.relu = relu;
    k.gemm(mm, ex);
  }
  h.set_out(i, y);
  h.set_out(i + 1, y);
  h.forward_done(i);
  return y;
}

// Runs the layers on the batch x of n samples; returns the last layer's output.
template <class Hooks>
const float* forward_walk(const Plan& plan, const Kernels& k, const Exec& ex,
                          const StepBuffers& b, const float* x, int64_t n, bool training,
                          Hooks& h) {
  using Kind = LayerSpec::Kind;
  const float* in = x;
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const PlannedLayer& layer = plan.layers[i];
    const LayerSpec& spec = layer.spec;
    if (h.fused(i)) {
      h.fused_forward(i, in, n, ex);
      in = h.out(++i);
      continue;
    }
    if (!training && layer.folds_norm) {  // the batch norm after it, folded in
      in = folded_forward(plan, k, ex, b, in, n, i, h);
      ++i;
      continue;
    }
    h.begin();
    float* y = h.output(i);
    float* z = layer.keeps_pre ? h.pre(i) : y;  // where the operation writes
    const bool relu = spec.activation.kind == Act::Relu;
    const float* kernel = layer.kernel >= 0 ? b.params + layer.kernel : nullptr;
    const float* bias = layer.bias >= 0 ? b.params + layer.bias : nullptr;
    switch (spec.kind) {
      case Kind::Conv2d:
        k.conv2d_forward(conv_geometry(layer, n), in, kernel, bias, relu, z, ex);
        break;
      case Kind::MaxPool2d:
        k.maxpool2d_forward(pool_geometry(layer, n), in, z, h.argmax(i), ex);
        break;
      case Kind::AvgPool2d:
        k.avgpool2d_forward(pool_geometry(layer, n), in, z, ex);
        break;
      case Kind::Reshape:
        y = z = const_cast<float*>(in);  // C order: the same memory
        break;
      case Kind::Dense:
        k.gemm(dense_forward_gemm(layer, n, in, kernel, bias, z), ex);
        break;
      case Kind::Dropout:
        if (!training || spec.rate == 0.0) {
          y = z = const_cast<float*>(in);  // the identity outside training
        } else {
          h.dropout_forward(i, in, y, n, ex);
        }
        break;
      case Kind::Activation:
        z = const_cast<float*>(in);
        if (spec.activation.kind == Act::Linear) y = z;
        break;
      case Kind::Augment:
        if (training) {
          h.augment(i, in, y, n, ex);
        } else if (spec.augment.mode == AugmentStep::Mode::Crop) {
          k.augment(augment_step(layer, n, 0, i), in, y, false, ex);  // the center crop
        } else {
          y = z = const_cast<float*>(in);  // the identity outside training
        }
        break;
      case Kind::BatchNorm: {
        const BatchNormGeometry g = batchnorm_geometry(layer, n);
        float* moving_mean = const_cast<float*>(b.params) + layer.moving_mean;
        float* moving_variance = const_cast<float*>(b.params) + layer.moving_variance;
        if (training) {
          k.batchnorm_forward_training(g, in, kernel, bias, z, h.mean(i), h.inv_std(i),
                                       moving_mean, moving_variance, ex);
        } else {
          k.batchnorm_inference(g, in, kernel, bias, moving_mean, moving_variance, z, ex);
        }
        break;
      }
    }
    // Conv and Dense ran their ReLU fused; an Activation layer's relu reads its input.
    const bool fused_relu = relu && (spec.kind == Kind::Conv2d || spec.kind == Kind::Dense);
    if (!fused_relu) activation_forward(layer, k, ex, z, y, n);
    h.set_out(i, y);
    in = y;
    h.forward_done(i);
  }
  return in;
}

// The loss of the last forward_walk's outputs against `targets` (plan.h's LossSpec),
// its mean into *loss (backend memory) and its gradient into b.grad_a: wrt the head's
// pre-activation values when the head is fused with the loss, else wrt its outputs.
template <class Hooks>
void loss_step(const Plan& plan, const Kernels& k, const Exec& ex, const StepBuffers& b,
               const float* x, const float* targets, int64_t n, double* loss, Hooks& h) {
  using Loss = LossSpec::Kind;
  const size_t last = plan.layers.size() - 1;
  const PlannedLayer& head = plan.layers[last];
  const float* in = head.fused_head ? pre_activation(plan, h, x, last) : h.out(last);
  const int64_t classes = head.out_size, count = n * classes;
  switch (plan.loss.kind) {
    case Loss::SparseCategorical:
      k.softmax_cross_entropy(n, classes, in, targets, b.grad_a, loss, ex);
      break;
    case Loss::Categorical:
      k.categorical_cross_entropy(n, classes, in, targets, b.grad_a, loss, ex);
      break;
    case Loss::Binary:
      k.sigmoid_cross_entropy(count, in, targets, b.grad_a, loss, ex);
      break;
    case Loss::MeanSquared:
    case Loss::MeanAbsolute:
    case Loss::Huber: {
      RegressionLoss r;
      r.kind = plan.loss.kind == Loss::MeanSquared    ? RegressionLoss::Kind::MeanSquared
               : plan.loss.kind == Loss::MeanAbsolute ? RegressionLoss::Kind::MeanAbsolute
                                                      : RegressionLoss::Kind::Huber;
      r.delta = static_cast<float>(plan.loss.delta);
      k.regression_loss(r, count, in, targets, b.grad_a, loss, ex);
      break;
    }
  }
}

// Gradients of every parameter from the loss's gradient in b.grad_a (the last forward_walk
// on x and loss_step must have run).
template <class Hooks>
void backward_walk(const Plan& plan, const Kernels& k, const Exec& ex, const StepBuffers& b,
                   const float* x, int64_t n, Hooks& h) {
  using Kind = LayerSpec::Kind;
  float* d = b.grad_a;     // gradient of the loss wrt the current layer's output
  bool relu_done = false;  // a max-pool above already masked d by this layer's ReLU
  for (size_t i = plan.layers.size(); i-- > plan.backward_stop;) {
    const PlannedLayer& layer = plan.layers[i];
    const LayerSpec& spec = layer.spec;
    const float* in = i == 0 ? x : h.out(i - 1);
    const bool need_dx = i > plan.backward_stop;
    const bool input_from_relu = i > 0 && plan.layers[i - 1].spec.activation.kind == Act::Relu;
    float* other = d == b.grad_a ? b.grad_b : b.grad_a;
    if (spec.kind == Kind::MaxPool2d && i > plan.backward_stop && h.fused(i - 1)) {
      const float* conv_in = i == 1 ? x : h.out(i - 2);
      h.fused_backward(i - 1, conv_in, d, i - 1 > plan.backward_stop ? other : nullptr, n, ex);
      d = other;
      relu_done = false;
      --i;
      continue;
    }
    h.begin();
    // The activation's gradient, in place: d becomes the gradient wrt its input.
    if (!layer.fused_head) {
      const ActivationSpec& a = spec.activation;
      const int64_t count = n * layer.out_size;
      if (a.kind == Act::Relu) {
        if (!relu_done) k.relu_backward(count, h.out(i), d, d, ex);
      } else if (a.kind == Act::Softmax) {
        k.softmax_backward(layer.rows(n), layer.channels(), h.out(i), d, d, ex);
      } else if (a.kind != Act::Linear) {
        k.activation_backward(a, count, pre_activation(plan, h, x, i), h.out(i), d, d, ex);
      }
    }
    relu_done = false;
    float* dkernel = layer.kernel >= 0 ? b.grads + layer.kernel : nullptr;
    float* db = layer.bias >= 0 ? b.grads + layer.bias : b.scratch_bias;
    switch (spec.kind) {
      case Kind::Conv2d: {
        const Conv2dGeometry g = conv_geometry(layer, n);
        k.conv2d_backward_filter(g, in, d, dkernel, db, false, ex);
        if (need_dx) k.conv2d_backward_data(g, b.params + layer.kernel, d, other, ex);
        d = other;
        break;
      }
      case Kind::MaxPool2d:
        if (need_dx) {
          k.maxpool2d_backward(pool_geometry(layer, n), d, h.argmax(i),
                               input_from_relu ? h.out(i) : nullptr, other, ex);
          relu_done = input_from_relu;
        }
        d = other;
        break;
      case Kind::AvgPool2d:
        if (need_dx) k.avgpool2d_backward(pool_geometry(layer, n), d, other, ex);
        d = other;
        break;
      case Kind::Reshape:
      case Kind::Activation:
      case Kind::Augment:  // never reached: the walk stops above it
        break;
      case Kind::Dense:
        k.gemm(dense_filter_gemm(layer, n, in, d, dkernel), ex);
        if (layer.bias >= 0) k.sum_rows(layer.rows(n), spec.units, d, db, ex);
        if (need_dx) k.gemm(dense_data_gemm(layer, n, d, b.params + layer.kernel, other), ex);
        d = other;
        break;
      case Kind::Dropout:
        if (h.out(i) != in) h.dropout_backward(i, d, n, ex);  // active this step
        break;
      case Kind::BatchNorm:
        k.batchnorm_backward(batchnorm_geometry(layer, n), in,
                             layer.kernel >= 0 ? b.params + layer.kernel : nullptr, h.mean(i),
                             h.inv_std(i), d, need_dx ? other : nullptr, dkernel,
                             layer.bias >= 0 ? db : nullptr, ex);
        d = other;
        break;
    }
    h.backward_done(i);
  }
}

}  // namespace fastnn
