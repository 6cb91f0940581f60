// plan.h — what both engines (net.h on the CPU, cuda_net.h on the GPU) build from a layer
// list: every layer's shapes and its place in one flat parameter buffer, checked once,
// plus the per-step numbers both must form the same way (Adam's step, dropout's stream).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "ops.h"

namespace fastnn {

// A layer: its operation, then its activation (ops.h's ActivationSpec, or Softmax over the
// last axis). An Activation layer is the identity operation followed by its activation,
// so one walk serves both (walk.h). Conv2d and Dense run a ReLU fused into their kernel.
struct LayerSpec {
  enum class Kind {
    Conv2d, MaxPool2d, AvgPool2d, Reshape, Dense, Dropout, Activation, BatchNorm, Augment
  } kind;
  int64_t units = 0;                // conv filters or dense units
  int64_t kh = 1, kw = 1;           // conv kernel or pool window
  int64_t sh = 1, sw = 1;           // strides
  bool same = false;                // conv or pool padding
  ActivationSpec activation;        // Linear when none
  bool use_bias = true;
  double rate = 0.0;                // dropout
  std::vector<int64_t> shape;       // reshape: the per-sample output shape
  // batch normalisation over the last axis; center = beta, scale = gamma
  double epsilon = 1e-3, momentum = 0.99;
  bool center = true, scale = true;
  // augmentation (augment.h): its kind and numbers; `shape` holds a crop's (height, width);
  // its coins come from its own seed when it has one, else from the model's (as dropout's)
  AugmentStep augment;
  bool has_seed = false;
  uint64_t seed = 0;
};

// The loss the engine trains on, and what it counts as correct. Targets are floats per
// sample: the class index (one float) for SparseCategorical, else one per output.
// Categorical and SparseCategorical run fused with a softmax head and Binary with a
// sigmoid head (the kernels take the logits), unless from_logits says the outputs are
// the logits already; the regression losses take the outputs as they are.
struct LossSpec {
  enum class Kind { SparseCategorical, Categorical, Binary, MeanSquared, MeanAbsolute, Huber }
      kind = Kind::SparseCategorical;
  bool from_logits = false;
  double delta = 1.0;  // Huber
  // Correct count: Argmax (top output vs the class: the label, or the targets' top),
  // Binary (each output > 0.5 against its target > 0.5, counted per element), or None.
  enum class Accuracy { None, Argmax, Binary } accuracy = Accuracy::Argmax;
  int64_t target_width(int64_t outputs) const { return kind == Kind::SparseCategorical ? 1 : outputs; }
};

struct OptimizerSpec {
  enum class Kind { Adam, Sgd } kind = Kind::Adam;
  double learning_rate = 1e-3, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7;
  double momentum = 0.0;
  bool nesterov = false;
};

// One parameter array inside the flat parameter buffer. Non-trainable ones (batch
// normalisation's moving statistics) get no gradient: theirs stays 0, so no optimizer
// moves them, and the forward pass updates them itself.
struct ParameterSlot {
  std::vector<int64_t> shape;
  int64_t offset, size;
  bool trainable = true;
};

struct BatchResult {
  double loss;      // mean (train_step) or sum over samples (evaluate) of the loss
  int64_t correct;  // samples (or, for Binary accuracy, outputs) counted correct
};

// One layer with its shapes (per sample) and its parameters' offsets (-1: none).
struct PlannedLayer {
  LayerSpec spec;
  std::vector<int64_t> in_shape, out_shape;
  int64_t in_size = 0, out_size = 0;
  int64_t kernel = -1, bias = -1;    // conv/dense; batch norm: gamma and beta
  int64_t moving_mean = -1, moving_variance = -1;  // batch norm
  // A conv whose output only the max-pool after it reads: the engines may run them fused.
  bool pooled = false;
  // A conv or dense layer (no activation) whose batch norm after it (with no activation
  // or a ReLU) runs folded into it at inference: one pass, the ReLU in the epilogue.
  bool folds_norm = false;
  // Keeps its pre-activation values (the activation's backward needs them): an
  // activation other than linear and a fused ReLU on a layer that has an operation.
  bool keeps_pre = false;
  // The last layer, whose activation the loss runs fused (softmax or sigmoid): the
  // backward starts at its pre-activation values.
  bool fused_head = false;
  int64_t rows(int64_t n) const;      // dense, softmax, batch norm: n · (out_size / last axis)
  int64_t channels() const { return out_shape.back(); }
};

// The checked stack. The constructor raises Error (ValueError) naming the layer.
struct Plan {
  Plan(std::vector<LayerSpec> specs, std::vector<int64_t> input_shape, OptimizerSpec optimizer,
       LossSpec loss = {});

  std::vector<PlannedLayer> layers;
  std::vector<int64_t> input_shape;
  OptimizerSpec optimizer;
  LossSpec loss;
  // The backward pass stops above this layer: the last augmentation, which has no
  // gradient (nothing before it may have weights), or 0.
  size_t backward_stop = 0;
  std::vector<ParameterSlot> slots;
  int64_t parameter_count = 0;
  int64_t trainable_count = 0;  // the trainable parameters come first in the buffer

  int optimizer_slot_count() const;  // state arrays per parameter: Adam 2, SGD 1 or 0
  std::vector<std::vector<int64_t>> output_shapes() const;
  int64_t classes() const { return layers.back().out_size; }  // outputs per sample
  int64_t target_width() const { return loss.target_width(classes()); }
  int64_t input_size() const;
  int64_t widest() const;  // the largest per-sample input or output of any layer
};

const char* kind_name(LayerSpec::Kind kind);
Conv2dGeometry conv_geometry(const PlannedLayer& conv, int64_t n);
Pool2dGeometry pool_geometry(const PlannedLayer& pool, int64_t n);
BatchNormGeometry batchnorm_geometry(const PlannedLayer& norm, int64_t n);
// A conv's or dense layer's kernel as a matrix: its rows (kh·kw·cin, or features) by units.
int64_t kernel_rows(const PlannedLayer& layer);

// A Dense layer's three GEMMs over n samples (w: its kernel, features × units; a sample
// of more than one axis is rows(n) rows of its last axis, as Keras's Dense):
//   forward  y (n × units) = x (n × features) · w + bias, ReLU when the layer has it;
//   filter   dw (features × units) = xᵀ · dy;   data  dx (n × features) = dy · wᵀ.
Gemm dense_forward_gemm(const PlannedLayer& dense, int64_t n, const float* x, const float* w,
                        const float* bias, float* y);
Gemm dense_filter_gemm(const PlannedLayer& dense, int64_t n, const float* x, const float* dy,
                       float* dw);
Gemm dense_data_gemm(const PlannedLayer& dense, int64_t n, const float* dy, const float* w,
                     float* dx);

// Keras Adam's step number t = iterations + 1, formed in double (see AdamStep).
AdamStep adam_step(const OptimizerSpec& optimizer, double learning_rate, int64_t iterations);

// The dropout coins of layer `layer_index` at optimizer step `iteration` (CONTRACT.md).
uint64_t dropout_layer_stream(uint64_t seed, size_t layer_index);  // before the iteration
DropoutStep dropout_step(double rate, uint64_t seed, size_t layer_index, int64_t iteration);
// An augmentation layer's step for n images: its geometry, and its coins' stream before
// the iteration (the GPU adds the iteration on the device) or, with `iteration`, after.
AugmentStep augment_step(const PlannedLayer& layer, int64_t n, uint64_t model_seed,
                         size_t layer_index);
AugmentStep augment_step(const PlannedLayer& layer, int64_t n, uint64_t model_seed,
                         size_t layer_index, int64_t iteration);

// The batches of one epoch over `samples` samples: step s covers positions
// [s·batch, min((s+1)·batch, samples)) of the epoch's order; the last may be short.
inline int64_t epoch_steps(int64_t samples, int64_t batch) { return (samples + batch - 1) / batch; }
inline int64_t step_rows(int64_t samples, int64_t batch, int64_t step) {
  return std::min(batch, samples - step * batch);
}

}  // namespace fastnn
