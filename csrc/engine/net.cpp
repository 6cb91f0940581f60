// net.cpp — the training step of a Sequential stack, on the CPU kernels:
//   forward:  walk.h's layer walk; each layer writes its post-activation output into its
//             own buffer (Flatten and inference-time Dropout only alias their input), a
//             conv and the max-pool after it run fused, chunk by chunk, in L2;
//   loss:     softmax + cross-entropy fused, giving dlogits;
//   backward: walk.h's, the fused pairs likewise;
//   update:   Adam or SGD over the flat parameter buffer in one pass.
#include "engine/net.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "cpu/dispatch.h"
#include "cpu/threads.h"
#include "cpu/workspace.h"
#include "engine/walk.h"

namespace fastnn {
namespace {

using cpu::conv2d_backward_data_workspace;
using cpu::conv2d_backward_filter_workspace;
using cpu::conv2d_forward_workspace;
using cpu::round_to_line;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// ---- construction: shapes, parameter layout, checks --------------------------------

Net::Net(std::vector<LayerSpec> layers, std::vector<int64_t> input_shape, OptimizerSpec optimizer,
         LossSpec loss)
    : learning_rate(optimizer.learning_rate),
      plan_(std::move(layers), std::move(input_shape), optimizer, loss) {
  for (const PlannedLayer& planned : plan_.layers) {
    Layer layer;
    static_cast<PlannedLayer&>(layer) = planned;
    layers_.push_back(std::move(layer));
  }
  const int64_t count = std::max<int64_t>(plan_.parameter_count, 1);
  for (AlignedBuffer* buffer : {&params_, &grads_}) {
    buffer->resize(count);
    std::fill(buffer->data(), buffer->data() + count, 0.0f);
  }
  for (int s = 0; s < optimizer_slot_count(); ++s) {
    state_[s].resize(count);
    std::fill(state_[s].data(), state_[s].data() + count, 0.0f);
  }
  reset_timings();
}

void Net::reset_timings() {
  timings_ = Timings{};
  timings_.forward.assign(layers_.size(), 0.0);
  timings_.backward.assign(layers_.size(), 0.0);
}

// ---- a conv and its max-pool, fused -----------------------------------------------------
// Run image chunk by image chunk on each worker, the conv's output lives in a per-worker
// scratch that stays in L2 (about 256 KiB) and is pooled at once: the full conv output
// (5.5 MB for the seed CNN's first layer at batch 64) is never written nor read back.

int64_t Net::fused_chunk(const Layer& conv) const {
  return std::max<int64_t>(1, 65536 / conv.out_size);
}

int64_t Net::fused_worker_floats(const Layer& conv) const {
  const int64_t chunk = fused_chunk(conv);
  return round_to_line(chunk * conv.out_size) +
         round_to_line(conv2d_forward_workspace(conv_geometry(conv, chunk), 1));
}

void Net::conv_pool_forward(Layer& conv, Layer& pool, const float* in, int64_t n,
                            const Exec& ex) {
  const Kernels& k = cpu_kernels();
  const int64_t chunk = fused_chunk(conv), chunks = (n + chunk - 1) / chunk;
  const float* w = params_.data() + conv.kernel;
  const float* bias = conv.bias >= 0 ? params_.data() + conv.bias : nullptr;
  const bool relu = conv.spec.activation.kind == Act::Relu;
  parallel_for(chunks, ex.threads, [&](int64_t begin, int64_t end, int worker) {
    float* scratch = ex.workspace + worker * fused_worker_floats(conv);
    const Exec one{1, scratch + round_to_line(chunk * conv.out_size)};
    for (int64_t c = begin; c < end; ++c) {
      const int64_t first = c * chunk, images = std::min(chunk, n - first);
      k.conv2d_forward(conv_geometry(conv, images), in + first * conv.in_size, w, bias, relu,
                       scratch, one);
      k.maxpool2d_forward(pool_geometry(pool, images), scratch,
                          pool.out_buffer.data() + first * pool.out_size,
                          pool.argmax.data() + first * pool.out_size, one);
    }
  });
  conv.out = nullptr;  // never materialised
  pool.out = pool.out_buffer.data();
}

// Backward, likewise chunk by chunk: the pool's gradient goes to a per-worker scratch
// and feeds the conv's filter gradient (summed into a per-worker partial, the partials
// then added in worker order) and data gradient at once.
int64_t Net::fused_backward_worker_floats(const Layer& conv) const {
  const int64_t chunk = fused_chunk(conv);
  const Conv2dGeometry g = conv_geometry(conv, chunk);
  return round_to_line(chunk * conv.out_size) + round_to_line(g.patch() * g.cout + g.cout) +
         round_to_line(std::max(conv2d_backward_filter_workspace(g, 1),
                                conv2d_backward_data_workspace(g, 1)));
}

void Net::conv_pool_backward(Layer& conv, Layer& pool, const float* in, const float* dy,
                             float* dx, int64_t n, const Exec& ex) {
  const Kernels& k = cpu_kernels();
  const int64_t chunk = fused_chunk(conv), chunks = (n + chunk - 1) / chunk;
  const int workers = static_cast<int>(std::min<int64_t>(ex.threads, chunks));
  const int64_t worker_floats = fused_backward_worker_floats(conv);
  const int64_t dw_size = conv_geometry(conv, 1).patch() * conv.spec.units;
  const float* w = params_.data() + conv.kernel;
  const float* relu_y = conv.spec.activation.kind == Act::Relu ? pool.out : nullptr;
  parallel_for(chunks, workers, [&](int64_t begin, int64_t end, int worker) {
    float* dconv = ex.workspace + worker * worker_floats;
    float* dw_part = dconv + round_to_line(chunk * conv.out_size);
    float* db_part = dw_part + dw_size;
    const Exec one{1, dw_part + round_to_line(dw_size + conv.spec.units)};
    for (int64_t c = begin; c < end; ++c) {
      const int64_t first = c * chunk, images = std::min(chunk, n - first);
      const int64_t at = first * pool.out_size;
      k.maxpool2d_backward(pool_geometry(pool, images), dy + at, pool.argmax.data() + at,
                           relu_y ? relu_y + at : nullptr, dconv, one);
      const Conv2dGeometry g = conv_geometry(conv, images);
      k.conv2d_backward_filter(g, in + first * conv.in_size, dconv, dw_part, db_part,
                               /*accumulate=*/c != begin, one);
      if (dx) k.conv2d_backward_data(g, w, dconv, dx + first * conv.in_size, one);
    }
  });
  const float* parts = ex.workspace + round_to_line(chunk * conv.out_size);  // worker 0's
  float* dw = grads_.data() + conv.kernel;
  float* db = conv.bias >= 0 ? grads_.data() + conv.bias : nullptr;
  parallel_for_blocks(dw_size + conv.spec.units, 4096, ex.threads, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      float sum = 0.0f;
      for (int t = 0; t < workers; ++t) sum += parts[t * worker_floats + j];
      if (j < dw_size) {
        dw[j] = sum;
      } else if (db) {
        db[j - dw_size] = sum;
      }
    }
  });
}

// ---- memory: grown to the largest batch and thread count seen, never per step -------

void Net::reserve(int64_t n, int threads) {
  if (n > batch_capacity_) {
    int64_t widest = 0;
    using Kind = LayerSpec::Kind;
    for (Layer& layer : layers_) {
      widest = std::max({widest, layer.in_size, layer.out_size});
      const bool aliases = layer.spec.kind == Kind::Reshape ||
                           (layer.spec.kind == Kind::Activation &&
                            layer.spec.activation.kind == Act::Linear);
      if (!aliases && !layer.pooled) layer.out_buffer.resize(n * layer.out_size);
      if (layer.keeps_pre) layer.pre.resize(n * layer.out_size);
      if (layer.spec.kind == Kind::Dropout) layer.mask.resize(n * layer.out_size);
      if (layer.spec.kind == Kind::MaxPool2d) layer.argmax.resize(n * layer.out_size);
      if (layer.spec.kind == Kind::BatchNorm) layer.stats.resize(2 * layer.channels());
      if (layer.folds_norm) layer.folded.resize((kernel_rows(layer) + 1) * layer.spec.units);
    }
    grad_a_.resize(n * widest);
    grad_b_.resize(n * widest);
    batch_capacity_ = n;
  }
  const Kernels& k = cpu_kernels();
  int64_t floats = std::max<int64_t>(loss_workspace(n * classes()), k.gemm_workspace(threads));
  int64_t widest_bias = 1;
  for (const Layer& layer : layers_) {
    if (layer.spec.kind == LayerSpec::Kind::BatchNorm) {
      floats = std::max(floats, k.batchnorm_workspace(batchnorm_geometry(layer, n), threads));
    }
    if (layer.spec.kind != LayerSpec::Kind::Conv2d) continue;
    const Conv2dGeometry g = conv_geometry(layer, n);
    floats = std::max(floats, k.conv2d_workspace(g, threads));
    if (layer.pooled) {
      floats = std::max({floats, threads * fused_worker_floats(layer),
                         threads * fused_backward_worker_floats(layer)});
    }
    widest_bias = std::max(widest_bias, g.cout);
  }
  if (floats > workspace_floats_) {
    workspace_.resize(floats);
    workspace_floats_ = floats;
  }
  scratch_bias_.resize(widest_bias);
}

// ---- the step ---------------------------------------------------------------------------

// What only the CPU engine does in walk.h's step: the conv + max-pool pairs run fused,
// dropout keeps its mask, and every layer is timed.
struct Net::Hooks {
  Net& net;
  std::chrono::steady_clock::time_point start;

  Layer& layer(size_t i) { return net.layers_[i]; }
  float* output(size_t i) { return layer(i).out_buffer.data(); }
  float* pre(size_t i) { return layer(i).pre.data(); }
  float* folded(size_t i) { return layer(i).folded.data(); }
  float* mean(size_t i) { return layer(i).stats.data(); }
  float* inv_std(size_t i) { return layer(i).stats.data() + layer(i).channels(); }
  int32_t* argmax(size_t i) { return layer(i).argmax.data(); }
  const float* out(size_t i) { return layer(i).out; }
  void set_out(size_t i, const float* p) { layer(i).out = p; }
  bool fused(size_t i) { return layer(i).pooled; }
  void fused_forward(size_t i, const float* in, int64_t n, const Exec& ex) {
    begin();
    net.conv_pool_forward(layer(i), layer(i + 1), in, n, ex);
    forward_done(i);  // timed as the conv
  }
  void fused_backward(size_t i, const float* in, const float* dy, float* dx, int64_t n,
                      const Exec& ex) {
    begin();
    net.conv_pool_backward(layer(i), layer(i + 1), in, dy, dx, n, ex);
    backward_done(i);
  }
  void dropout_forward(size_t i, const float* in, float* y, int64_t n, const Exec& ex) {
    Layer& l = layer(i);
    const DropoutStep step = dropout_step(l.spec.rate, net.seed, i, net.iterations);
    cpu_kernels().dropout_forward(n * l.out_size, in, y, l.mask.data(), step, ex);
  }
  void dropout_backward(size_t i, float* d, int64_t n, const Exec& ex) {
    const float* mask = layer(i).mask.data();  // the gradient is masked the same way
    parallel_for_blocks(n * layer(i).out_size, 16384, ex.threads, [=](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) d[j] *= mask[j];
    });
  }
  void augment(size_t i, const float* in, float* y, int64_t n, const Exec& ex) {
    cpu_kernels().augment(augment_step(layer(i), n, net.seed, i, net.iterations), in, y, true, ex);
  }
  void begin() { start = std::chrono::steady_clock::now(); }
  void forward_done(size_t i) { net.timings_.forward[i] += seconds_since(start); }
  void backward_done(size_t i) { net.timings_.backward[i] += seconds_since(start); }
};

StepBuffers Net::buffers() {
  return {params_.data(), grads_.data(), grad_a_.data(), grad_b_.data(), scratch_bias_.data()};
}

const float* Net::forward(const float* x, int64_t n, bool training, const Exec& ex) {
  Hooks hooks{*this, {}};
  return forward_walk(plan_, cpu_kernels(), ex, buffers(), x, n, training, hooks);
}

void Net::backward(const float* x, int64_t n, const Exec& ex) {
  Hooks hooks{*this, {}};
  backward_walk(plan_, cpu_kernels(), ex, buffers(), x, n, hooks);
}

void Net::update(const Exec& ex) {
  const Kernels& k = cpu_kernels();
  if (plan_.optimizer.kind == OptimizerSpec::Kind::Adam) {
    const AdamStep step = adam_step(plan_.optimizer, learning_rate, iterations);
    k.adam_update(plan_.trainable_count, params_.data(), grads_.data(), state_[0].data(),
                  state_[1].data(), step, ex);
  } else {
    const SgdStep step{static_cast<float>(learning_rate), static_cast<float>(plan_.optimizer.momentum),
                       plan_.optimizer.nesterov};
    k.sgd_update(plan_.trainable_count, params_.data(), grads_.data(),
                 optimizer_slot_count() ? state_[0].data() : nullptr, step, ex);
  }
  ++iterations;
}

// As Keras's accuracies: the first maximum wins (NumPy's argmax) against the label or the
// targets' own first maximum; binary: each output > 0.5 against its target > 0.5.
int64_t Net::count_correct(const float* outputs, const float* targets, int64_t n) const {
  const int64_t classes = this->classes(), width = target_width();
  int64_t correct = 0;
  switch (plan_.loss.accuracy) {
    case LossSpec::Accuracy::None:
      break;
    case LossSpec::Accuracy::Argmax:
      for (int64_t i = 0; i < n; ++i) {
        const float* row = outputs + i * classes;
        const float* target = targets + i * width;
        const int64_t label = width == 1 ? static_cast<int64_t>(target[0])
                                         : std::max_element(target, target + width) - target;
        correct += std::max_element(row, row + classes) - row == label;
      }
      break;
    case LossSpec::Accuracy::Binary:
      for (int64_t j = 0; j < n * classes; ++j) correct += (outputs[j] > 0.5f) == (targets[j] > 0.5f);
      break;
  }
  return correct;
}

BatchResult Net::train_step(const float* x, const float* targets, int64_t n) {
  const int threads = get_num_threads();
  reserve(n, threads);
  const Exec ex{threads, workspace_.data()};
  Hooks hooks{*this, {}};
  const float* outputs = forward(x, n, /*training=*/true, ex);
  auto start = std::chrono::steady_clock::now();
  double loss = 0.0;
  loss_step(plan_, cpu_kernels(), ex, buffers(), x, targets, n, &loss, hooks);
  const int64_t correct = count_correct(outputs, targets, n);
  timings_.loss += seconds_since(start);
  backward(x, n, ex);
  start = std::chrono::steady_clock::now();
  update(ex);
  timings_.update += seconds_since(start);
  ++timings_.steps;
  return {loss, correct};
}

BatchResult Net::evaluate(const float* x, const float* targets, int64_t n) {
  const int threads = get_num_threads();
  reserve(n, threads);
  const Exec ex{threads, workspace_.data()};
  Hooks hooks{*this, {}};
  const float* outputs = forward(x, n, /*training=*/false, ex);
  double loss = 0.0;
  loss_step(plan_, cpu_kernels(), ex, buffers(), x, targets, n, &loss, hooks);
  return {loss * static_cast<double>(n), count_correct(outputs, targets, n)};
}

void Net::predict(const float* x, int64_t n, float* out) {
  const int threads = get_num_threads();
  reserve(n, threads);
  const Exec ex{threads, workspace_.data()};
  const float* outputs = forward(x, n, /*training=*/false, ex);
  std::memcpy(out, outputs, sizeof(float) * n * classes());
}

// ---- whole epochs over a dataset -----------------------------------------------------

const float* Net::gather(const HostDataset& data, int64_t batch, bool shuffled, uint64_t key,
                         int64_t step, int64_t rows) {
  const int64_t first = step * batch, sample = plan_.input_size(), width = target_width();
  if (!shuffled) {  // consecutive rows: read them in place
    if (data.targets) {
      batch_targets_.assign(data.targets + first * width, data.targets + (first + rows) * width);
    }
    return data.x + first * sample;
  }
  batch_x_.resize(rows * sample);  // grows only
  batch_targets_.resize(rows * width);
  const uint64_t samples = static_cast<uint64_t>(data.count);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t source = static_cast<int64_t>(shuffle_index(key, first + r, samples));
    std::memcpy(batch_x_.data() + r * sample, data.x + source * sample, sizeof(float) * sample);
    if (data.targets) {
      std::memcpy(batch_targets_.data() + r * width, data.targets + source * width,
                  sizeof(float) * width);
    }
  }
  return batch_x_.data();
}

void Net::train_steps(const HostDataset& data, int64_t batch, bool shuffled, uint64_t key,
                      int64_t first, int64_t count) {
  const auto steps = static_cast<size_t>(epoch_steps(data.count, batch));
  if (step_loss_.size() < steps) {
    step_loss_.resize(steps);
    step_correct_.resize(steps);
  }
  for (int64_t step = first; step < first + count; ++step) {
    const int64_t rows = step_rows(data.count, batch, step);
    const float* x = gather(data, batch, shuffled, key, step, rows);  // fills batch_targets_
    const BatchResult result = train_step(x, batch_targets_.data(), rows);
    step_loss_[step] = static_cast<float>(result.loss);
    step_correct_[step] = static_cast<int32_t>(result.correct);
  }
}

void Net::step_results(int64_t first, int64_t count, float* step_loss, int32_t* step_correct) {
  if (first + count > static_cast<int64_t>(step_loss_.size())) {
    fail("step_results(", first, ", ", count, "): those steps were not run");
  }
  std::copy_n(step_loss_.data() + first, count, step_loss);
  std::copy_n(step_correct_.data() + first, count, step_correct);
}

void Net::evaluate_steps(const HostDataset& data, int64_t batch, int64_t first, int64_t count,
                         double* loss_sum, int32_t* correct) {
  for (int64_t s = 0; s < count; ++s) {
    const int64_t step = first + s, rows = step_rows(data.count, batch, step);
    const float* x = gather(data, batch, false, 0, step, rows);
    const BatchResult result = evaluate(x, batch_targets_.data(), rows);
    loss_sum[s] = result.loss;
    correct[s] = static_cast<int32_t>(result.correct);
  }
}

void Net::predict_steps(const HostDataset& data, int64_t batch, int64_t first, int64_t count,
                        float* out) {
  for (int64_t s = 0; s < count; ++s) {
    const int64_t step = first + s, rows = step_rows(data.count, batch, step);
    predict(gather(data, batch, false, 0, step, rows), rows, out);
    out += rows * classes();
  }
}

}  // namespace fastnn
