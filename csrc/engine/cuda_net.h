// cuda_net.h — the compiled plan on one GPU. Parameters, gradients, optimizer state,
// activations and the training set live in device memory; a training step (gather the
// batch, forward, loss, backward, update, record) is captured once as a CUDA graph per
// batch size and replayed, so the host only enqueues steps and rarely reads results.
// The calls mirror net.h's, so models.fit drives both engines with one loop. Plain C++
// types only: the bindings include this without the CUDA headers.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/plan.h"

namespace fastnn {

// Samples and (optional) targets copied to the GPU once.
class CudaDataset {
 public:
  struct Data;
  explicit CudaDataset(std::unique_ptr<Data> data);
  ~CudaDataset();
  int64_t count() const;
  bool has_targets() const;
  const Data& data() const { return *data_; }

 private:
  std::unique_ptr<Data> data_;
};

class CudaNet {
 public:
  // Raises RuntimeError when this process sees no GPU.
  CudaNet(std::vector<LayerSpec> layers, std::vector<int64_t> input_shape, OptimizerSpec optimizer,
          LossSpec loss);
  ~CudaNet();

  // targets: target_width() floats per sample, or null (predict only).
  std::shared_ptr<CudaDataset> dataset(const float* x, const float* targets, int64_t count);

  // Enqueue steps [first, first + count) of an epoch (net.h's train_steps) and return;
  // step_results waits for exactly such a run and copies out its losses and counts.
  void train_steps(const std::shared_ptr<CudaDataset>& data, int64_t batch, bool shuffled,
                   uint64_t key, int64_t first, int64_t count);
  void step_results(int64_t first, int64_t count, float* step_loss, int32_t* step_correct);
  void evaluate_steps(const std::shared_ptr<CudaDataset>& data, int64_t batch, int64_t first,
                      int64_t count, double* loss_sum, int32_t* correct);
  void predict_steps(const std::shared_ptr<CudaDataset>& data, int64_t batch, int64_t first,
                     int64_t count, float* out);

  // One batch from host memory (uploaded, run, waited for): train_on_batch and friends.
  BatchResult train_step(const float* x, const float* targets, int64_t n);
  BatchResult evaluate(const float* x, const float* targets, int64_t n);
  void predict(const float* x, int64_t n, float* out);

  // The host copy of the parameters and optimizer state that Python's views show:
  // pull() waits for the GPU and refreshes it; push() sends it to the GPU.
  void pull();
  void push();
  float* parameters();
  float* optimizer_state(int slot);

  const std::vector<ParameterSlot>& parameter_slots() const;
  int optimizer_slot_count() const;
  int64_t parameter_count() const;
  const std::vector<int64_t>& input_shape() const;
  std::vector<std::vector<int64_t>> output_shapes() const;
  int64_t classes() const;
  int64_t target_width() const;
  const Plan& plan() const;
  void set_seed(uint64_t seed);  // dropout's; the step graphs are captured anew

  int64_t iterations = 0;  // the host's count is the truth; each run of steps sends it
  double learning_rate;
  std::mutex mutex;  // one call at a time: the bindings release the GIL

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fastnn
