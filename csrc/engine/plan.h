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

enum class Activation { Linear, Relu, Softmax };

struct LayerSpec {
  enum class Kind { Conv2d, MaxPool2d, Flatten, Dense, Dropout } kind;
  int64_t units = 0;                // conv filters or dense units
  int64_t kh = 1, kw = 1;           // conv kernel or pool window
  int64_t sh = 1, sw = 1;           // strides
  bool same = false;                // conv padding
  Activation activation = Activation::Linear;
  bool use_bias = true;
  double rate = 0.0;                // dropout
};

struct OptimizerSpec {
  enum class Kind { Adam, Sgd } kind = Kind::Adam;
  double learning_rate = 1e-3, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7;
  double momentum = 0.0;
  bool nesterov = false;
};

// One parameter array inside the flat parameter buffer.
struct ParameterSlot {
  std::vector<int64_t> shape;
  int64_t offset, size;
};

struct BatchResult {
  double loss;      // mean (train_step) or sum (evaluate) of the cross-entropy
  int64_t correct;  // samples whose highest output is the label
};

// One layer with its shapes (per sample) and its parameters' offsets (-1: none).
struct PlannedLayer {
  LayerSpec spec;
  std::vector<int64_t> in_shape, out_shape;
  int64_t in_size = 0, out_size = 0;
  int64_t kernel = -1, bias = -1;
  // A conv whose output only the max-pool after it reads: the engines may run them fused.
  bool pooled = false;
};

// The checked stack. The constructor raises Error (ValueError) naming the layer.
struct Plan {
  Plan(std::vector<LayerSpec> specs, std::vector<int64_t> input_shape, OptimizerSpec optimizer);

  std::vector<PlannedLayer> layers;
  std::vector<int64_t> input_shape;
  OptimizerSpec optimizer;
  std::vector<ParameterSlot> slots;
  int64_t parameter_count = 0;

  int optimizer_slot_count() const;  // state arrays per parameter: Adam 2, SGD 1 or 0
  std::vector<std::vector<int64_t>> output_shapes() const;
  int64_t classes() const { return layers.back().out_size; }
  int64_t input_size() const;
  int64_t widest() const;  // the largest per-sample input or output of any layer
};

const char* kind_name(LayerSpec::Kind kind);
Conv2dGeometry conv_geometry(const PlannedLayer& conv, int64_t n);
Pool2dGeometry pool_geometry(const PlannedLayer& pool, int64_t n);

// A Dense layer's three GEMMs over n rows (w: its kernel, features × units):
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

// The batches of one epoch over `samples` samples: step s covers positions
// [s·batch, min((s+1)·batch, samples)) of the epoch's order; the last may be short.
inline int64_t epoch_steps(int64_t samples, int64_t batch) { return (samples + batch - 1) / batch; }
inline int64_t step_rows(int64_t samples, int64_t batch, int64_t step) {
  return std::min(batch, samples - step * batch);
}

}  // namespace fastnn
