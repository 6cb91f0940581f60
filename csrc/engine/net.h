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
#include "engine/plan.h"
#include "engine/walk.h"
#include "ops.h"

namespace fastnn {

// Samples a Net reads in place: NHWC float32 inputs and float32 targets, `target_width`
// per sample (plan.h's LossSpec; null for predict).
struct HostDataset {
  const float* x = nullptr;
  const float* targets = nullptr;
  int64_t count = 0;
};

class Net {
 public:
  Net(std::vector<LayerSpec> layers, std::vector<int64_t> input_shape, OptimizerSpec optimizer,
      LossSpec loss);

  BatchResult train_step(const float* x, const float* targets, int64_t n);
  BatchResult evaluate(const float* x, const float* targets, int64_t n);
  void predict(const float* x, int64_t n, float* out);

  // Steps [first, first + count) of an epoch over `data` in batches of `batch` (plan.h's
  // epoch_steps), the order drawn by shuffle_index(key, ·) when `shuffled`; step_results
  // then gives each step's mean loss and correct count. The CUDA engine has the same
  // calls (it only enqueues in train_steps), so fit drives both with one loop.
  void train_steps(const HostDataset& data, int64_t batch, bool shuffled, uint64_t key,
                   int64_t first, int64_t count);
  void step_results(int64_t first, int64_t count, float* step_loss, int32_t* step_correct);
  // Batches [first, first + count) in order, no update: summed loss and correct count.
  void evaluate_steps(const HostDataset& data, int64_t batch, int64_t first, int64_t count,
                      double* loss_sum, int32_t* correct);
  // Outputs of batches [first, first + count), in order, into out (rows × classes).
  void predict_steps(const HostDataset& data, int64_t batch, int64_t first, int64_t count,
                     float* out);

  const std::vector<ParameterSlot>& parameter_slots() const { return plan_.slots; }
  float* parameters() { return params_.data(); }
  float* gradients() { return grads_.data(); }
  int optimizer_slot_count() const { return plan_.optimizer_slot_count(); }
  float* optimizer_state(int slot) { return state_[slot].data(); }
  int64_t parameter_count() const { return plan_.parameter_count; }
  const std::vector<int64_t>& input_shape() const { return plan_.input_shape; }
  std::vector<std::vector<int64_t>> output_shapes() const { return plan_.output_shapes(); }
  int64_t classes() const { return layers_.back().out_size; }
  int64_t target_width() const { return plan_.target_width(); }
  const Plan& plan() const { return plan_; }

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
  struct Layer : PlannedLayer {
    const float* out = nullptr;                // this batch's output (post-activation)
    AlignedBuffer out_buffer, mask;            // own output; dropout's mask
    AlignedBuffer pre, stats;                  // pre-activation; batch norm's mean, inv_std
    AlignedBuffer folded;                      // kernel and bias with the next norm folded in
    std::vector<int32_t> argmax;               // max-pooling's
  };

  const float* gather(const HostDataset& data, int64_t batch, bool shuffled, uint64_t key,
                      int64_t step, int64_t rows);
  int64_t fused_chunk(const Layer& conv) const;
  int64_t fused_worker_floats(const Layer& conv) const;
  int64_t fused_backward_worker_floats(const Layer& conv) const;
  void conv_pool_forward(Layer& conv, Layer& pool, const float* in, int64_t n, const Exec& ex);
  void conv_pool_backward(Layer& conv, Layer& pool, const float* in, const float* dy,
                          float* dx, int64_t n, const Exec& ex);
  void reserve(int64_t n, int threads);
  struct Hooks;  // what walk.h's step needs from this engine
  StepBuffers buffers();
  const float* forward(const float* x, int64_t n, bool training, const Exec& ex);
  void backward(const float* x, int64_t n, const Exec& ex);  // from dlogits in grad_a_
  void update(const Exec& ex);
  int64_t count_correct(const float* outputs, const float* targets, int64_t n) const;

  Plan plan_;
  std::vector<Layer> layers_;
  AlignedBuffer params_, grads_, state_[2];
  AlignedBuffer grad_a_, grad_b_, workspace_, scratch_bias_;
  AlignedBuffer batch_x_;  // a shuffled batch, gathered
  std::vector<float> batch_targets_;
  std::vector<float> step_loss_;  // by step of the epoch
  std::vector<int32_t> step_correct_;
  int64_t batch_capacity_ = 0, workspace_floats_ = 0;
  Timings timings_;
};

}  // namespace fastnn
