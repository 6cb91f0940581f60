// net.h — the compiled training plan: a Sequential stack of layers with its parameters,
// gradients, optimizer state and activation buffers held in C++ memory, run by one call
// per training step. The Python API (fastnn.models) describes; this executes.
// CONTRACT.md beside this file is the Python-facing contract.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
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

class Net {
 public:
  Net(std::vector<LayerSpec> layers, std::vector<int64_t> input_shape, OptimizerSpec optimizer);

  BatchResult train_step(const float* x, const int32_t* labels, int64_t n);
  BatchResult evaluate(const float* x, const int32_t* labels, int64_t n);
  void predict(const float* x, int64_t n, float* out);

  const std::vector<ParameterSlot>& parameter_slots() const { return slots_; }
  float* parameters() { return params_.data(); }
  float* gradients() { return grads_.data(); }
  int optimizer_slot_count() const;  // state arrays per parameter: Adam 2, SGD 1 or 0
  float* optimizer_state(int slot) { return state_[slot].data(); }
  int64_t parameter_count() const { return parameter_count_; }
  const std::vector<int64_t>& input_shape() const { return input_shape_; }
  std::vector<std::vector<int64_t>> output_shapes() const;
  int64_t classes() const { return layers_.back().out_size; }

  // Wall seconds spent in each layer's forward and backward (and in the loss and the
  // update) since the last reset: a steady_clock read per layer and direction, so cheap
  // enough to stay on. For benchmarks that break a step down.
  struct Timings {
    std::vector<double> forward, backward;
    double loss = 0, update = 0;
    int64_t steps = 0;
  };
  const Timings& timings() const { return timings_; }
  void reset_timings();

  int64_t iterations = 0;
  double learning_rate;
  uint64_t seed = 0;
  std::mutex mutex;  // one call at a time: the bindings release the GIL

 private:
  struct Layer {
    LayerSpec spec;
    std::vector<int64_t> in_shape, out_shape;  // per sample
    int64_t in_size = 0, out_size = 0;
    int64_t kernel = -1, bias = -1;            // offsets in the parameter buffer
    const float* out = nullptr;                // this batch's output (post-activation)
    AlignedBuffer out_buffer, mask;            // own output; dropout's mask
    std::vector<int32_t> argmax;               // max-pooling's
    bool pooled = false;  // a conv whose output only a max-pool reads: run fused with it
  };

  Conv2dGeometry conv_geometry(const Layer& layer, int64_t n) const;
  Pool2dGeometry pool_geometry(const Layer& layer, int64_t n) const;
  int64_t fused_chunk(const Layer& conv) const;
  int64_t fused_worker_floats(const Layer& conv) const;
  int64_t fused_backward_worker_floats(const Layer& conv) const;
  void conv_pool_forward(Layer& conv, Layer& pool, const float* in, int64_t n, const Exec& ex);
  void conv_pool_backward(Layer& conv, Layer& pool, const float* in, const float* dy,
                          float* dx, int64_t n, const Exec& ex);
  void reserve(int64_t n, int threads);
  const float* forward(const float* x, int64_t n, bool training, const Exec& ex);
  void backward(const float* x, float* dlogits, int64_t n, const Exec& ex);
  void update(const Exec& ex);
  int64_t count_correct(const float* logits, const int32_t* labels, int64_t n) const;

  std::vector<Layer> layers_;
  std::vector<int64_t> input_shape_;
  OptimizerSpec optimizer_;
  std::vector<ParameterSlot> slots_;
  int64_t parameter_count_ = 0;
  AlignedBuffer params_, grads_, state_[2];
  AlignedBuffer grad_a_, grad_b_, workspace_, scratch_bias_;
  int64_t batch_capacity_ = 0, workspace_floats_ = 0;
  Timings timings_;
};

}  // namespace fastnn
