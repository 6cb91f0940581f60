// cuda_net.cu — the training step of a Sequential stack on the GPU (cuda_net.h):
//   state:    a TrainState in device memory says which dataset, epoch order, step and
//             optimizer step the next step runs; the step's last kernel advances it;
//   step:     gather the batch, forward (walk.h's layer walk, conv + bias + ReLU fused),
//             the loss (walk.h's loss_step), backward (walk.h's, a ReLU undone inside the pooling
//             gradient), Adam or SGD over the flat parameter buffer in one launch, record
//             loss and correct count;
//   graphs:   that step, captured once per batch size, is replayed for every step, so a
//             step costs one graph launch on the host and nothing on the Python side;
//   results:  each run of steps ends with a copy of its slots to pinned host memory and
//             an event; the host waits on that event only when it reads the results.
#include "engine/cuda_net.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>

#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/kernels.h"
#include "engine/walk.h"

namespace fastnn {

using cuda::check;
using cuda::DeviceBuffer;

struct CudaDataset::Data {
  DeviceBuffer<float> x;
  DeviceBuffer<float> targets;  // empty for predict-only data
  int64_t count = 0;
};

CudaDataset::CudaDataset(std::unique_ptr<Data> data) : data_(std::move(data)) {}
CudaDataset::~CudaDataset() = default;
int64_t CudaDataset::count() const { return data_->count; }
bool CudaDataset::has_targets() const { return data_->targets.size() > 0; }

namespace {

// Host memory the GPU copies into asynchronously (pageable memory would make each copy
// synchronous).
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  void grow(int64_t count) {  // keeps the contents
    if (count <= count_) return;
    T* bigger = nullptr;
    check(cudaMallocHost(reinterpret_cast<void**>(&bigger), sizeof(T) * count),
          "cudaMallocHost (step results)");
    if (data_) {
      std::memcpy(bigger, data_, sizeof(T) * count_);
      cudaFreeHost(data_);
    }
    data_ = bigger;
    count_ = count;
  }
  T* data() { return data_; }

 private:
  T* data_ = nullptr;
  int64_t count_ = 0;
};

// Ends a stream capture left open by an exception, so the stream stays usable.
class Capture {
 public:
  explicit Capture(cudaStream_t stream) : stream_(stream) {
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
  }
  ~Capture() {
    if (!open_) return;
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
  }
  cudaGraphExec_t finish() {
    cudaGraph_t graph = nullptr;
    open_ = false;
    check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(status, "cudaGraphInstantiate");
    return exec;
  }

 private:
  cudaStream_t stream_;
  bool open_ = true;
};

enum class Mode { Train, Evaluate, Predict };

}  // namespace

struct CudaNet::Impl {
  explicit Impl(Plan plan_in) : plan(std::move(plan_in)) {}
  ~Impl();

  Plan plan;
  uint64_t seed = 0;
  cudaStream_t stream = nullptr;
  int64_t sample = 0;  // floats per input sample

  DeviceBuffer<float> params, grads, state[2];
  AlignedBuffer host_params, host_state[2];
  DeviceBuffer<cuda::TrainState> train_state;
  DeviceBuffer<double> mean_loss;

  // Sized for `capacity` rows; growing them drops the graphs, which hold their addresses.
  int64_t capacity = 0;
  std::vector<DeviceBuffer<float>> outputs;   // per layer; empty where a layer aliases
  std::vector<DeviceBuffer<float>> pre;       // per layer that keeps_pre
  std::vector<DeviceBuffer<float>> stats;     // per batch norm: mean, inv_std
  std::vector<DeviceBuffer<float>> folded;    // per layer that folds_norm: kernel, bias
  std::vector<DeviceBuffer<int32_t>> argmax;  // per max-pool layer
  DeviceBuffer<float> batch_x, grad_a, grad_b, workspace, scratch_bias;
  DeviceBuffer<float> batch_targets;
  std::vector<const float*> out;              // this step's output of each layer
  std::map<int64_t, cudaGraphExec_t> graphs;  // training step, by batch rows

  // Each step's loss and correct count, by step index; a run of steps copies its slots
  // to pinned memory. Training and evaluation keep separate slots, so a callback may
  // evaluate while training steps are still in flight.
  struct Slots {
    int64_t capacity = 0;
    DeviceBuffer<double> loss;
    DeviceBuffer<int32_t> correct;
    PinnedBuffer<double> host_loss;
    PinnedBuffer<int32_t> host_correct;
    void reserve(int64_t steps, cudaStream_t stream);
    void copy_out(int64_t first, int64_t count, cudaStream_t stream);
  } train_slots, eval_slots;
  struct Run {
    int64_t first, count;
    cudaEvent_t done;
    std::shared_ptr<CudaDataset> data;  // kept alive until its steps are read
  };
  std::deque<Run> runs;

  void drop_graphs();
  void sync();
  Exec exec() { return {1, workspace.data(), stream}; }
  template <class T>
  void upload(T* device, const T* host, int64_t count, const char* what);
  template <class T>
  void download(T* host, const T* device, int64_t count, const char* what);
  void reserve(int64_t rows);
  void set_state(const CudaDataset* data, int64_t batch, bool shuffled, uint64_t key,
                 Mode mode, int64_t first, int64_t iterations, double learning_rate,
                 float* outputs = nullptr, int64_t outputs_first_row = 0);
  void run_step(int64_t rows, Mode mode);
  struct Hooks;  // what walk.h's step needs from this engine
  StepBuffers buffers();
  const float* forward(int64_t rows, bool training);
  void backward(int64_t rows);
  void update();
  cudaGraphExec_t graph_for(int64_t rows);
};

CudaNet::Impl::~Impl() {
  // Destructors must not throw: errors here are ignored.
  for (Run& run : runs) cudaEventDestroy(run.done);
  for (auto& entry : graphs) cudaGraphExecDestroy(entry.second);
  if (stream) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
}

void CudaNet::Impl::drop_graphs() {
  for (auto& entry : graphs) cudaGraphExecDestroy(entry.second);
  graphs.clear();
}

// Waits for everything enqueued; pending runs stay readable (their copies are done).
void CudaNet::Impl::sync() { check(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

// Copies between the host and the GPU go on the compute stream, in order with the steps
// (a plain cudaMemcpy runs on the legacy default stream, which a non-blocking stream does
// not wait for), and are waited for: the host memory may change once this returns.
template <class T>
void CudaNet::Impl::upload(T* device, const T* host, int64_t count, const char* what) {
  check(cudaMemcpyAsync(device, host, sizeof(T) * count, cudaMemcpyHostToDevice, stream), what);
  sync();
}

template <class T>
void CudaNet::Impl::download(T* host, const T* device, int64_t count, const char* what) {
  check(cudaMemcpyAsync(host, device, sizeof(T) * count, cudaMemcpyDeviceToHost, stream), what);
  sync();
}

void CudaNet::Impl::Slots::reserve(int64_t steps, cudaStream_t stream) {
  if (steps <= capacity) return;
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // the old slots may be in use
  loss = DeviceBuffer<double>(steps);
  correct = DeviceBuffer<int32_t>(steps);
  host_loss.grow(steps);
  host_correct.grow(steps);
  capacity = steps;
}

void CudaNet::Impl::Slots::copy_out(int64_t first, int64_t count, cudaStream_t stream) {
  check(cudaMemcpyAsync(host_loss.data() + first, loss.data() + first, sizeof(double) * count,
                        cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (step losses)");
  check(cudaMemcpyAsync(host_correct.data() + first, correct.data() + first,
                        sizeof(int32_t) * count, cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync (step counts)");
}

// Sized for batches of up to `rows`: the last, shorter step of an epoch reuses them (the
// convolutions' workspace bound holds for every smaller batch too).
void CudaNet::Impl::reserve(int64_t rows) {
  using Kind = LayerSpec::Kind;
  int64_t floats = loss_workspace(rows * plan.classes());
  int64_t widest_bias = 1;
  for (const PlannedLayer& layer : plan.layers) {
    if (layer.spec.kind == Kind::BatchNorm) {
      floats = std::max(floats, cuda::kernels.batchnorm_workspace(batchnorm_geometry(layer, rows), 1));
    }
    if (layer.spec.kind != Kind::Conv2d) continue;
    floats = std::max(floats, cuda::kernels.conv2d_workspace(conv_geometry(layer, rows), 1));
    widest_bias = std::max(widest_bias, layer.spec.units);
  }
  if (rows <= capacity && floats <= workspace.size()) return;
  sync();  // the buffers may be in use by enqueued steps
  drop_graphs();
  rows = std::max(rows, capacity);
  outputs.clear();
  pre.clear();
  stats.clear();
  folded.clear();
  argmax.clear();
  for (const PlannedLayer& layer : plan.layers) {
    const Kind kind = layer.spec.kind;
    const bool aliases = kind == Kind::Reshape || (kind == Kind::Dropout && layer.spec.rate == 0.0) ||
                         (kind == Kind::Activation && layer.spec.activation.kind == Act::Linear);
    outputs.emplace_back(aliases ? 0 : rows * layer.out_size);
    pre.emplace_back(layer.keeps_pre ? rows * layer.out_size : 0);
    stats.emplace_back(kind == Kind::BatchNorm ? 2 * layer.channels() : 0);
    folded.emplace_back(layer.folds_norm ? (kernel_rows(layer) + 1) * layer.spec.units : 0);
    argmax.emplace_back(kind == Kind::MaxPool2d ? rows * layer.out_size : 0);
  }
  batch_x = DeviceBuffer<float>(rows * sample);
  batch_targets = DeviceBuffer<float>(rows * plan.target_width());
  grad_a = DeviceBuffer<float>(rows * plan.widest());
  grad_b = DeviceBuffer<float>(rows * plan.widest());
  workspace = DeviceBuffer<float>(std::max(floats, workspace.size()));
  scratch_bias = DeviceBuffer<float>(widest_bias);
  out.assign(plan.layers.size(), nullptr);
  capacity = rows;
}

void CudaNet::Impl::set_state(const CudaDataset* data, int64_t batch, bool shuffled, uint64_t key,
                              Mode mode, int64_t first, int64_t iterations,
                              double learning_rate, float* outputs, int64_t outputs_first_row) {
  cuda::TrainState s{};
  s.x = data->data().x.data();
  s.targets = data->has_targets() ? data->data().targets.data() : nullptr;
  s.samples = data->count();
  s.sample_floats = sample;
  s.target_width = plan.target_width();
  s.batch = batch;
  s.shuffle_key = key;
  s.shuffled = shuffled ? 1 : 0;
  s.training = mode == Mode::Train ? 1 : 0;
  s.step = first;
  s.iteration = iterations;
  s.learning_rate = learning_rate;
  Slots& slots = mode == Mode::Train ? train_slots : eval_slots;
  s.step_loss = slots.loss.data();
  s.step_correct = slots.correct.data();
  s.outputs = outputs;
  s.outputs_first_row = outputs_first_row;
  cuda::set_train_state(train_state.data(), s, stream);
}

// ---- one step, as kernels on the stream (captured into a graph when training) -------

// What only the GPU engine does in walk.h's step: dropout's coins are recomputed from
// the iteration in TrainState (so one graph serves every step), and nothing runs fused.
struct CudaNet::Impl::Hooks {
  Impl& m;

  float* output(size_t i) { return m.outputs[i].data(); }
  float* pre(size_t i) { return m.pre[i].data(); }
  float* folded(size_t i) { return m.folded[i].data(); }
  float* mean(size_t i) { return m.stats[i].data(); }
  float* inv_std(size_t i) { return m.stats[i].data() + m.plan.layers[i].channels(); }
  int32_t* argmax(size_t i) { return m.argmax[i].data(); }
  const float* out(size_t i) { return m.out[i]; }
  void set_out(size_t i, const float* p) { m.out[i] = p; }
  bool fused(size_t) { return false; }
  void fused_forward(size_t, const float*, int64_t, const Exec&) {}
  void fused_backward(size_t, const float*, const float*, float*, int64_t, const Exec&) {}
  // Forward (y = x · coins) and backward (d ·= the same coins) are one kernel's pass.
  void dropout(size_t i, const float* in, float* out, int64_t n, bool forward) {
    const PlannedLayer& layer = m.plan.layers[i];
    const DropoutStep step = dropout_step(layer.spec.rate, m.seed, i, 0);  // its threshold, scale
    auto pass = forward ? cuda::dropout_forward_resident : cuda::dropout_backward_resident;
    pass(n * layer.out_size, in, out, step.threshold, step.scale, dropout_layer_stream(m.seed, i),
         m.train_state.data(), m.stream);
  }
  void dropout_forward(size_t i, const float* in, float* y, int64_t n, const Exec&) {
    dropout(i, in, y, n, true);
  }
  void dropout_backward(size_t i, float* d, int64_t n, const Exec&) { dropout(i, d, d, n, false); }
  // The coins' stream gets the iteration on the device, as dropout's.
  void augment(size_t i, const float* in, float* y, int64_t n, const Exec&) {
    cuda::augment_resident(augment_step(m.plan.layers[i], n, m.seed, i), in, y,
                           m.train_state.data(), m.stream);
  }
  void begin() {}
  void forward_done(size_t) {}
  void backward_done(size_t) {}
};

StepBuffers CudaNet::Impl::buffers() {
  return {params.data(), grads.data(), grad_a.data(), grad_b.data(), scratch_bias.data()};
}

const float* CudaNet::Impl::forward(int64_t rows, bool training) {
  Hooks hooks{*this};
  return forward_walk(plan, cuda::kernels, exec(), buffers(), batch_x.data(), rows, training,
                      hooks);
}

void CudaNet::Impl::backward(int64_t rows) {
  Hooks hooks{*this};
  backward_walk(plan, cuda::kernels, exec(), buffers(), batch_x.data(), rows, hooks);
}

void CudaNet::Impl::update() {
  const OptimizerSpec& o = plan.optimizer;
  if (o.kind == OptimizerSpec::Kind::Adam) {
    cuda::adam_update_resident(plan.trainable_count, params.data(), grads.data(),
                               state[0].data(), state[1].data(), o.beta_1, o.beta_2, o.epsilon,
                               train_state.data(), stream);
  } else {
    cuda::sgd_update_resident(plan.trainable_count, params.data(), grads.data(),
                              plan.optimizer_slot_count() ? state[0].data() : nullptr,
                              static_cast<float>(o.momentum), o.nesterov, train_state.data(),
                              stream);
  }
}

void CudaNet::Impl::run_step(int64_t rows, Mode mode) {
  const bool labelled = mode != Mode::Predict;
  const int64_t width = plan.target_width();
  cuda::gather_batch(train_state.data(), rows, sample, width, batch_x.data(),
                     labelled ? batch_targets.data() : nullptr, stream);
  const float* outputs = forward(rows, mode == Mode::Train);
  const int64_t classes = plan.classes();
  const int accuracy = static_cast<int>(plan.loss.accuracy);
  if (mode == Mode::Predict) {
    cuda::predict_outputs(rows, classes, outputs, false, train_state.data(), stream);
    cuda::finish_step(train_state.data(), rows, classes, outputs, nullptr, width, accuracy,
                      nullptr, stream);
    return;
  }
  // The loss's gradient goes to grad_a, where the backward pass starts (and evaluation
  // ignores it).
  Hooks hooks{*this};
  loss_step(plan, cuda::kernels, exec(), buffers(), batch_x.data(), batch_targets.data(), rows,
            mean_loss.data(), hooks);
  if (mode == Mode::Train) {
    backward(rows);
    update();
  }
  cuda::finish_step(train_state.data(), rows, classes, outputs, batch_targets.data(), width,
                    accuracy, mean_loss.data(), stream);
}

cudaGraphExec_t CudaNet::Impl::graph_for(int64_t rows) {
  auto found = graphs.find(rows);
  if (found != graphs.end()) return found->second;
  Capture capture(stream);
  run_step(rows, Mode::Train);
  cudaGraphExec_t exec = capture.finish();
  graphs.emplace(rows, exec);
  return exec;
}

// ---- the public calls ---------------------------------------------------------------

CudaNet::CudaNet(std::vector<LayerSpec> layers, std::vector<int64_t> input_shape,
                 OptimizerSpec optimizer, LossSpec loss)
    : learning_rate(optimizer.learning_rate) {
  Plan plan(std::move(layers), std::move(input_shape), optimizer, loss);  // checks first
  cuda::require_device("use device='cpu' or 'auto'");
  impl_ = std::make_unique<Impl>(std::move(plan));
  Impl& m = *impl_;
  check(cudaSetDevice(0), "cudaSetDevice(0)");
  check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  m.sample = m.plan.input_size();
  const int64_t count = std::max<int64_t>(m.plan.parameter_count, 1);
  m.params = DeviceBuffer<float>(count);
  m.grads = DeviceBuffer<float>(count);
  // Every gradient the step reads is written first, but a zeroed buffer makes that a
  // property of the code, not of what the allocation held.
  check(cudaMemsetAsync(m.grads.data(), 0, sizeof(float) * count, m.stream),
        "cudaMemsetAsync (gradients)");
  m.host_params.resize(count);
  std::fill(m.host_params.data(), m.host_params.data() + count, 0.0f);
  for (int s = 0; s < m.plan.optimizer_slot_count(); ++s) {
    m.state[s] = DeviceBuffer<float>(count);
    m.host_state[s].resize(count);
    std::fill(m.host_state[s].data(), m.host_state[s].data() + count, 0.0f);
  }
  m.train_state = DeviceBuffer<cuda::TrainState>(1);
  m.mean_loss = DeviceBuffer<double>(1);
  push();
}

CudaNet::~CudaNet() = default;

std::shared_ptr<CudaDataset> CudaNet::dataset(const float* x, const float* targets,
                                              int64_t count) {
  Impl& m = *impl_;
  auto data = std::make_unique<CudaDataset::Data>();
  data->count = count;
  data->x = DeviceBuffer<float>(count * m.sample);
  m.upload(data->x.data(), x, count * m.sample, "cudaMemcpyAsync (dataset samples to the GPU)");
  if (targets) {
    const int64_t floats = count * m.plan.target_width();
    data->targets = DeviceBuffer<float>(floats);
    m.upload(data->targets.data(), targets, floats, "cudaMemcpyAsync (dataset targets to the GPU)");
  }
  return std::make_shared<CudaDataset>(std::move(data));
}

void CudaNet::train_steps(const std::shared_ptr<CudaDataset>& data, int64_t batch, bool shuffled,
                          uint64_t key, int64_t first, int64_t count) {
  Impl& m = *impl_;
  if (first == 0 && !m.runs.empty()) {  // a new epoch: results left unread are dropped
    m.sync();
    for (Impl::Run& run : m.runs) cudaEventDestroy(run.done);
    m.runs.clear();
  }
  m.reserve(std::min(batch, data->count()));
  m.train_slots.reserve(epoch_steps(data->count(), batch), m.stream);
  m.set_state(data.get(), batch, shuffled, key, Mode::Train, first, iterations, learning_rate);
  // Each launched step advances the device's iteration, so the host counts it at once: a
  // failure partway leaves both counts equal.
  for (int64_t step = first; step < first + count; ++step) {
    check(cudaGraphLaunch(m.graph_for(step_rows(data->count(), batch, step)), m.stream),
          "cudaGraphLaunch (training step)");
    ++iterations;
  }
  m.train_slots.copy_out(first, count, m.stream);
  cudaEvent_t done;
  check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
  m.runs.push_back({first, count, done, data});
  check(cudaEventRecord(done, m.stream), "cudaEventRecord");
}

void CudaNet::step_results(int64_t first, int64_t count, float* step_loss, int32_t* step_correct) {
  Impl& m = *impl_;
  auto run = std::find_if(m.runs.begin(), m.runs.end(), [&](const Impl::Run& r) {
    return r.first == first && r.count == count;
  });
  if (run == m.runs.end()) {
    fail("step_results(", first, ", ", count, "): no such run of steps is pending; pass the "
         "first and count given to train_steps");
  }
  check(cudaEventSynchronize(run->done), "cudaEventSynchronize (training steps)");
  for (int64_t s = 0; s < count; ++s) {
    step_loss[s] = static_cast<float>(m.train_slots.host_loss.data()[first + s]);
    step_correct[s] = m.train_slots.host_correct.data()[first + s];
  }
  cudaEventDestroy(run->done);
  m.runs.erase(run);
}

void CudaNet::evaluate_steps(const std::shared_ptr<CudaDataset>& data, int64_t batch,
                             int64_t first, int64_t count, double* loss_sum, int32_t* correct) {
  Impl& m = *impl_;
  m.reserve(std::min(batch, data->count()));
  m.eval_slots.reserve(epoch_steps(data->count(), batch), m.stream);
  m.set_state(data.get(), batch, false, 0, Mode::Evaluate, first, iterations, learning_rate);
  for (int64_t step = first; step < first + count; ++step) {
    m.run_step(step_rows(data->count(), batch, step), Mode::Evaluate);
  }
  m.eval_slots.copy_out(first, count, m.stream);
  m.sync();
  std::copy_n(m.eval_slots.host_loss.data() + first, count, loss_sum);
  std::copy_n(m.eval_slots.host_correct.data() + first, count, correct);
}

void CudaNet::predict_steps(const std::shared_ptr<CudaDataset>& data, int64_t batch,
                            int64_t first, int64_t count, float* out) {
  Impl& m = *impl_;
  m.reserve(std::min(batch, data->count()));
  const int64_t begin = first * batch;
  const int64_t rows = std::min(data->count(), (first + count) * batch) - begin;
  DeviceBuffer<float> outputs(rows * classes());
  m.set_state(data.get(), batch, false, 0, Mode::Predict, first, iterations, learning_rate,
              outputs.data(), begin);
  for (int64_t step = first; step < first + count; ++step) {
    m.run_step(step_rows(data->count(), batch, step), Mode::Predict);
  }
  check(cudaMemcpyAsync(out, outputs.data(), sizeof(float) * rows * classes(),
                        cudaMemcpyDeviceToHost, m.stream),
        "cudaMemcpyAsync (predictions)");
  m.sync();
}

BatchResult CudaNet::train_step(const float* x, const float* targets, int64_t n) {
  const auto data = dataset(x, targets, n);
  train_steps(data, n, false, 0, 0, 1);
  float loss;
  int32_t correct;
  step_results(0, 1, &loss, &correct);
  return {loss, correct};
}

BatchResult CudaNet::evaluate(const float* x, const float* targets, int64_t n) {
  const auto data = dataset(x, targets, n);
  double loss;
  int32_t correct;
  evaluate_steps(data, n, 0, 1, &loss, &correct);
  return {loss, correct};
}

void CudaNet::predict(const float* x, int64_t n, float* out) {
  predict_steps(dataset(x, nullptr, n), n, 0, 1, out);
}

void CudaNet::pull() {
  Impl& m = *impl_;
  m.sync();
  const int64_t count = std::max<int64_t>(m.plan.parameter_count, 1);
  m.download(m.host_params.data(), m.params.data(), count,
             "cudaMemcpyAsync (parameters to the host)");
  for (int s = 0; s < m.plan.optimizer_slot_count(); ++s) {
    m.download(m.host_state[s].data(), m.state[s].data(), count,
               "cudaMemcpyAsync (optimizer state to the host)");
  }
}

void CudaNet::push() {
  Impl& m = *impl_;
  m.sync();
  const int64_t count = std::max<int64_t>(m.plan.parameter_count, 1);
  m.upload(m.params.data(), m.host_params.data(), count, "cudaMemcpyAsync (parameters to the GPU)");
  for (int s = 0; s < m.plan.optimizer_slot_count(); ++s) {
    m.upload(m.state[s].data(), m.host_state[s].data(), count,
             "cudaMemcpyAsync (optimizer state to the GPU)");
  }
}

float* CudaNet::parameters() { return impl_->host_params.data(); }
float* CudaNet::optimizer_state(int slot) { return impl_->host_state[slot].data(); }
const std::vector<ParameterSlot>& CudaNet::parameter_slots() const { return impl_->plan.slots; }
int CudaNet::optimizer_slot_count() const { return impl_->plan.optimizer_slot_count(); }
int64_t CudaNet::parameter_count() const { return impl_->plan.parameter_count; }
const std::vector<int64_t>& CudaNet::input_shape() const { return impl_->plan.input_shape; }
std::vector<std::vector<int64_t>> CudaNet::output_shapes() const {
  return impl_->plan.output_shapes();
}
int64_t CudaNet::classes() const { return impl_->plan.classes(); }
int64_t CudaNet::target_width() const { return impl_->plan.target_width(); }
const Plan& CudaNet::plan() const { return impl_->plan; }

void CudaNet::set_seed(uint64_t seed) {
  impl_->sync();
  impl_->drop_graphs();  // they hold the dropout streams derived from the seed
  impl_->seed = seed;
}

}  // namespace fastnn
