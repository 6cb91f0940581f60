// plan.cpp — checking a layer stack and laying out its parameters (plan.h).
#include "engine/plan.h"

#include <cmath>

namespace fastnn {
namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t p = 1;
  for (int64_t d : shape) p *= d;
  return p;
}

}  // namespace

const char* kind_name(LayerSpec::Kind kind) {
  switch (kind) {
    case LayerSpec::Kind::Conv2d: return "conv2d";
    case LayerSpec::Kind::MaxPool2d: return "maxpool2d";
    case LayerSpec::Kind::AvgPool2d: return "avgpool2d";
    case LayerSpec::Kind::Reshape: return "reshape";
    case LayerSpec::Kind::Dense: return "dense";
    case LayerSpec::Kind::Dropout: return "dropout";
    case LayerSpec::Kind::Activation: return "activation";
    case LayerSpec::Kind::BatchNorm: return "batchnorm";
    case LayerSpec::Kind::Augment: return "augment";
  }
  return "?";
}

int64_t PlannedLayer::rows(int64_t n) const { return n * (out_size / out_shape.back()); }

namespace {

// Appends a parameter array of `shape` to the plan; returns its offset. A non-trainable
// one is placed after every trainable one once all are known (place_frozen_slots), so
// the optimizer runs over one prefix of the buffer: until then it returns a placeholder.
int64_t add_slot(Plan& plan, std::vector<int64_t> shape, bool trainable = true) {
  const int64_t size = product(shape);
  if (!trainable) {
    plan.slots.push_back({std::move(shape), -1, size, false});
    return -2 - static_cast<int64_t>(plan.slots.size() - 1);
  }
  const int64_t offset = plan.parameter_count;
  plan.slots.push_back({std::move(shape), offset, size, true});
  plan.parameter_count += size;
  return offset;
}

void place_frozen_slots(Plan& plan) {
  plan.trainable_count = plan.parameter_count;
  for (ParameterSlot& slot : plan.slots) {
    if (slot.trainable) continue;
    slot.offset = plan.parameter_count;
    plan.parameter_count += slot.size;
  }
  for (PlannedLayer& layer : plan.layers) {
    for (int64_t* offset : {&layer.moving_mean, &layer.moving_variance}) {
      if (*offset <= -2) *offset = plan.slots[static_cast<size_t>(-2 - *offset)].offset;
    }
  }
}

bool is(const ActivationSpec& a, Act kind) { return a.kind == kind; }

}  // namespace

Plan::Plan(std::vector<LayerSpec> specs, std::vector<int64_t> input_shape_in,
           OptimizerSpec optimizer_in, LossSpec loss_in)
    : input_shape(std::move(input_shape_in)), optimizer(optimizer_in), loss(loss_in) {
  using Kind = LayerSpec::Kind;
  if (specs.empty()) fail("the model has no layers");
  if (input_shape.empty()) fail("input_shape must have at least one axis");
  for (int64_t d : input_shape) {
    if (d < 1) fail("input_shape dimensions must be >= 1, got ", shape_str(input_shape));
  }
  std::vector<int64_t> shape = input_shape;
  for (size_t i = 0; i < specs.size(); ++i) {
    PlannedLayer layer;
    layer.spec = specs[i];
    const LayerSpec& spec = layer.spec;
    const std::string where = "layer " + std::to_string(i) + " (" + kind_name(spec.kind) + ")";
    layer.in_shape = shape;
    switch (spec.kind) {
      case Kind::Conv2d:
      case Kind::MaxPool2d:
      case Kind::AvgPool2d: {
        if (shape.size() != 3) {
          fail(where, " needs a per-sample input of shape (height, width, channels), got ",
               shape_str(shape));
        }
        const bool conv = spec.kind == Kind::Conv2d;
        if (conv && spec.units < 1) fail(where, ": filters must be >= 1, got ", spec.units);
        if (spec.kh < 1 || spec.kw < 1 || spec.sh < 1 || spec.sw < 1) {
          fail(where, ": window and strides must be >= 1, got window (", spec.kh, ", ", spec.kw,
               ") strides (", spec.sh, ", ", spec.sw, ")");
        }
        int64_t oh, ow, pad;
        if (!conv_output_size(shape[0], spec.kh, spec.sh, spec.same, &oh, &pad) ||
            !conv_output_size(shape[1], spec.kw, spec.sw, spec.same, &ow, &pad)) {
          fail(where, ": its ", conv ? "kernel" : "pool", " (", spec.kh, ", ", spec.kw,
               ") is larger than its input ", shape_str(shape), " with padding='valid'");
        }
        shape = {oh, ow, conv ? spec.units : shape[2]};
        if (conv) layer.kernel = add_slot(*this, {spec.kh, spec.kw, layer.in_shape[2], spec.units});
        if (conv && spec.use_bias) layer.bias = add_slot(*this, {spec.units});
        break;
      }
      case Kind::Reshape:
        if (spec.shape.empty()) layer.spec.shape = {product(shape)};  // flatten
        for (int64_t d : spec.shape) {
          if (d < 1) fail(where, ": shape dimensions must be >= 1, got ", shape_str(spec.shape));
        }
        if (product(spec.shape) != product(shape)) {
          fail(where, ": cannot reshape ", shape_str(shape), " (", product(shape), " values) to ",
               shape_str(spec.shape));
        }
        shape = spec.shape;
        break;
      case Kind::Dense:
        if (spec.units < 1) fail(where, ": units must be >= 1, got ", spec.units);
        layer.kernel = add_slot(*this, {shape.back(), spec.units});
        if (spec.use_bias) layer.bias = add_slot(*this, {spec.units});
        shape.back() = spec.units;  // on the last axis, as Keras's Dense
        break;
      case Kind::Dropout:
        if (!(spec.rate >= 0.0 && spec.rate < 1.0)) {
          fail(where, ": rate must be in [0, 1), got ", spec.rate);
        }
        break;
      case Kind::Activation:
        break;
      case Kind::Augment:
        if (shape.size() != 3) {
          fail(where, " needs a per-sample input of shape (height, width, channels), got ",
               shape_str(shape));
        }
        if (parameter_count > 0 || !slots.empty()) {
          fail(where, ": an augmentation layer must come before every layer with weights "
               "(it passes no gradient back), as in Keras models that augment their input");
        }
        if (spec.augment.mode == AugmentStep::Mode::Crop) {
          if (spec.shape.size() != 2 || spec.shape[0] < 1 || spec.shape[1] < 1) {
            fail(where, ": a crop needs (height, width) >= 1, got ", shape_str(spec.shape));
          }
          shape = {spec.shape[0], spec.shape[1], shape[2]};
        }
        backward_stop = i + 1;
        break;
      case Kind::BatchNorm: {
        if (!(spec.epsilon > 0.0)) fail(where, ": epsilon must be > 0, got ", spec.epsilon);
        if (!(spec.momentum >= 0.0 && spec.momentum <= 1.0)) {
          fail(where, ": momentum must be in [0, 1], got ", spec.momentum);
        }
        const int64_t channels = shape.back();  // Keras's order: gamma, beta, moving stats
        if (spec.scale) layer.kernel = add_slot(*this, {channels});
        if (spec.center) layer.bias = add_slot(*this, {channels});
        layer.moving_mean = add_slot(*this, {channels}, false);
        layer.moving_variance = add_slot(*this, {channels}, false);
        break;
      }
    }
    const bool has_operation = spec.kind != Kind::Activation;
    const bool may_activate = spec.kind == Kind::Conv2d || spec.kind == Kind::Dense ||
                              spec.kind == Kind::Activation || spec.kind == Kind::BatchNorm;
    if (!may_activate && !is(spec.activation, Act::Linear)) fail(where, " takes no activation");
    layer.keeps_pre = has_operation && !is(spec.activation, Act::Linear) &&
                      !is(spec.activation, Act::Relu);
    layer.out_shape = shape;
    layer.in_size = product(layer.in_shape);
    layer.out_size = product(shape);
    layers.push_back(std::move(layer));
  }

  place_frozen_slots(*this);

  // The loss and the head it fuses with.
  PlannedLayer& head = layers.back();
  const Act head_act = head.spec.activation.kind;
  using Loss = LossSpec::Kind;
  const bool categorical = loss.kind == Loss::SparseCategorical || loss.kind == Loss::Categorical;
  if (!loss.from_logits && categorical) {
    if (head_act != Act::Softmax) {
      fail("a categorical cross-entropy with from_logits=False needs a softmax on the last "
           "layer (or from_logits=True for raw outputs)");
    }
    head.fused_head = true;
  }
  if (!loss.from_logits && loss.kind == Loss::Binary) {
    if (head_act != Act::Sigmoid) {
      fail("binary cross-entropy with from_logits=False needs a sigmoid on the last layer "
           "(or from_logits=True for raw outputs)");
    }
    head.fused_head = true;
  }
  if (head.fused_head) head.keeps_pre = head.spec.kind != Kind::Activation;
  if (categorical && head.out_shape.size() != 1) {
    fail("the last layer's output must be one vector per sample (N, classes) for a "
         "categorical cross-entropy, got ", shape_str(head.out_shape));
  }
  if (loss.kind == Loss::Huber && !(loss.delta > 0)) fail("Huber delta must be > 0, got ", loss.delta);

  switch (optimizer.kind) {
    case OptimizerSpec::Kind::Adam:
      if (!(optimizer.beta_1 >= 0 && optimizer.beta_1 < 1)) fail("Adam beta_1 must be in [0, 1), got ", optimizer.beta_1);
      if (!(optimizer.beta_2 >= 0 && optimizer.beta_2 < 1)) fail("Adam beta_2 must be in [0, 1), got ", optimizer.beta_2);
      if (!(optimizer.epsilon >= 0)) fail("Adam epsilon must be >= 0, got ", optimizer.epsilon);
      break;
    case OptimizerSpec::Kind::Sgd:
      if (!(optimizer.momentum >= 0 && optimizer.momentum <= 1)) fail("SGD momentum must be in [0, 1], got ", optimizer.momentum);
      break;
  }
  if (!std::isfinite(optimizer.learning_rate)) {
    fail("learning_rate must be finite, got ", optimizer.learning_rate);
  }
  for (size_t i = 0; i + 1 < layers.size(); ++i) {
    const LayerSpec& op = layers[i].spec;
    const LayerSpec& norm = layers[i + 1].spec;
    layers[i].folds_norm = (op.kind == Kind::Conv2d || op.kind == Kind::Dense) &&
                           op.activation.kind == Act::Linear && norm.kind == Kind::BatchNorm &&
                           (norm.activation.kind == Act::Linear ||
                            norm.activation.kind == Act::Relu) &&
                           !layers[i + 1].fused_head;
  }
  // The CPU's fused conv + max-pool runs the conv's ReLU (or none) only.
  for (size_t i = 0; i + 1 < layers.size(); ++i) {
    const Act act = layers[i].spec.activation.kind;
    layers[i].pooled = layers[i].spec.kind == Kind::Conv2d &&
                       (act == Act::Linear || act == Act::Relu) &&
                       layers[i + 1].spec.kind == Kind::MaxPool2d;
  }
}

int Plan::optimizer_slot_count() const {
  if (optimizer.kind == OptimizerSpec::Kind::Adam) return 2;
  return optimizer.momentum != 0.0 ? 1 : 0;
}

std::vector<std::vector<int64_t>> Plan::output_shapes() const {
  std::vector<std::vector<int64_t>> shapes;
  for (const PlannedLayer& layer : layers) shapes.push_back(layer.out_shape);
  return shapes;
}

int64_t Plan::input_size() const { return product(input_shape); }

int64_t Plan::widest() const {
  int64_t widest = 0;
  for (const PlannedLayer& layer : layers) {
    widest = std::max({widest, layer.in_size, layer.out_size});
  }
  return widest;
}

Conv2dGeometry conv_geometry(const PlannedLayer& layer, int64_t n) {
  Conv2dGeometry g{};
  g.n = n, g.h = layer.in_shape[0], g.w = layer.in_shape[1], g.cin = layer.in_shape[2];
  g.kh = layer.spec.kh, g.kw = layer.spec.kw, g.cout = layer.spec.units;
  g.stride_h = layer.spec.sh, g.stride_w = layer.spec.sw;
  conv_output_size(g.h, g.kh, g.stride_h, layer.spec.same, &g.oh, &g.pad_top);
  conv_output_size(g.w, g.kw, g.stride_w, layer.spec.same, &g.ow, &g.pad_left);
  return g;
}

Pool2dGeometry pool_geometry(const PlannedLayer& layer, int64_t n) {
  Pool2dGeometry g{};
  g.n = n, g.h = layer.in_shape[0], g.w = layer.in_shape[1], g.c = layer.in_shape[2];
  g.pool_h = layer.spec.kh, g.pool_w = layer.spec.kw;
  g.stride_h = layer.spec.sh, g.stride_w = layer.spec.sw;
  conv_output_size(g.h, g.pool_h, g.stride_h, layer.spec.same, &g.oh, &g.pad_top);
  conv_output_size(g.w, g.pool_w, g.stride_w, layer.spec.same, &g.ow, &g.pad_left);
  return g;
}

int64_t kernel_rows(const PlannedLayer& layer) {
  return layer.spec.kind == LayerSpec::Kind::Conv2d ? conv_geometry(layer, 1).patch()
                                                    : layer.in_shape.back();
}

BatchNormGeometry batchnorm_geometry(const PlannedLayer& norm, int64_t n) {
  return {norm.rows(n), norm.channels(), static_cast<float>(norm.spec.epsilon),
          static_cast<float>(norm.spec.momentum)};
}

Gemm dense_forward_gemm(const PlannedLayer& dense, int64_t n, const float* x, const float* w,
                        const float* bias, float* y) {
  const int64_t features = dense.in_shape.back();
  Gemm g;
  g.m = dense.rows(n), g.n = dense.spec.units, g.k = features;
  g.a = x, g.lda = features;
  g.b = w, g.ldb = dense.spec.units;
  g.c = y, g.ldc = dense.spec.units;
  g.bias = bias, g.relu = dense.spec.activation.kind == Act::Relu;
  return g;
}

Gemm dense_filter_gemm(const PlannedLayer& dense, int64_t n, const float* x, const float* dy,
                       float* dw) {
  const int64_t features = dense.in_shape.back();
  Gemm g;
  g.m = features, g.n = dense.spec.units, g.k = dense.rows(n);
  g.a = x, g.lda = features, g.trans_a = true;
  g.b = dy, g.ldb = dense.spec.units;
  g.c = dw, g.ldc = dense.spec.units;
  return g;
}

Gemm dense_data_gemm(const PlannedLayer& dense, int64_t n, const float* dy, const float* w,
                     float* dx) {
  const int64_t features = dense.in_shape.back();
  Gemm g;
  g.m = dense.rows(n), g.n = features, g.k = dense.spec.units;
  g.a = dy, g.lda = dense.spec.units;
  g.b = w, g.ldb = dense.spec.units, g.trans_b = true;
  g.c = dx, g.ldc = features;
  return g;
}

AdamStep adam_step(const OptimizerSpec& optimizer, double learning_rate, int64_t iterations) {
  const double t = static_cast<double>(iterations + 1);
  const double alpha = learning_rate * std::sqrt(1.0 - std::pow(optimizer.beta_2, t)) /
                       (1.0 - std::pow(optimizer.beta_1, t));
  return {static_cast<float>(alpha), static_cast<float>(1.0 - optimizer.beta_1),
          static_cast<float>(1.0 - optimizer.beta_2), static_cast<float>(optimizer.epsilon)};
}

uint64_t dropout_layer_stream(uint64_t seed, size_t layer_index) {
  return splitmix64(seed) + (static_cast<uint64_t>(layer_index) << 40);
}

AugmentStep augment_step(const PlannedLayer& layer, int64_t n, uint64_t model_seed,
                         size_t layer_index) {
  AugmentStep s = layer.spec.augment;
  s.n = n, s.h = layer.in_shape[0], s.w = layer.in_shape[1], s.c = layer.in_shape[2];
  s.oh = layer.out_shape[0], s.ow = layer.out_shape[1];
  s.stream = dropout_layer_stream(layer.spec.has_seed ? layer.spec.seed : model_seed, layer_index);
  return s;
}

AugmentStep augment_step(const PlannedLayer& layer, int64_t n, uint64_t model_seed,
                         size_t layer_index, int64_t iteration) {
  AugmentStep s = augment_step(layer, n, model_seed, layer_index);
  s.stream = splitmix64(s.stream + static_cast<uint64_t>(iteration));
  return s;
}

DropoutStep dropout_step(double rate, uint64_t seed, size_t layer_index, int64_t iteration) {
  return {static_cast<uint32_t>(std::ceil(rate * 16777216.0)),
          static_cast<float>(1.0 / (1.0 - rate)),
          splitmix64(dropout_layer_stream(seed, layer_index) + static_cast<uint64_t>(iteration))};
}

}  // namespace fastnn
