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
    case LayerSpec::Kind::Flatten: return "flatten";
    case LayerSpec::Kind::Dense: return "dense";
    case LayerSpec::Kind::Dropout: return "dropout";
  }
  return "?";
}

Plan::Plan(std::vector<LayerSpec> specs, std::vector<int64_t> input_shape_in,
           OptimizerSpec optimizer_in)
    : input_shape(std::move(input_shape_in)), optimizer(optimizer_in) {
  if (specs.empty()) fail("the model has no layers");
  if (input_shape.size() != 3 && input_shape.size() != 1) {
    fail("input_shape must be (height, width, channels) or (features,), got ",
         shape_str(input_shape));
  }
  for (int64_t d : input_shape) {
    if (d < 1) fail("input_shape dimensions must be >= 1, got ", shape_str(input_shape));
  }
  std::vector<int64_t> shape = input_shape;
  for (size_t i = 0; i < specs.size(); ++i) {
    PlannedLayer layer;
    layer.spec = specs[i];
    const LayerSpec& spec = layer.spec;
    const std::string where = "layer " + std::to_string(i) + " (" + kind_name(spec.kind) + ")";
    const bool last = i + 1 == specs.size();
    layer.in_shape = shape;
    if (spec.activation == Activation::Softmax && !last) {
      fail(where, ": softmax is supported only as the activation of the last layer");
    }
    switch (spec.kind) {
      case LayerSpec::Kind::Conv2d:
      case LayerSpec::Kind::MaxPool2d: {
        if (shape.size() != 3) {
          fail(where, " needs a per-sample input of shape (height, width, channels), got ",
               shape_str(shape));
        }
        const bool conv = spec.kind == LayerSpec::Kind::Conv2d;
        if (conv && spec.units < 1) fail(where, ": filters must be >= 1, got ", spec.units);
        if (spec.kh < 1 || spec.kw < 1 || spec.sh < 1 || spec.sw < 1) {
          fail(where, ": window and strides must be >= 1, got window (", spec.kh, ", ", spec.kw,
               ") strides (", spec.sh, ", ", spec.sw, ")");
        }
        int64_t oh, ow, pad;
        const bool same = conv && spec.same;
        if (!conv_output_size(shape[0], spec.kh, spec.sh, same, &oh, &pad) ||
            !conv_output_size(shape[1], spec.kw, spec.sw, same, &ow, &pad)) {
          fail(where, ": its ", conv ? "kernel" : "pool", " (", spec.kh, ", ", spec.kw,
               ") is larger than its input ", shape_str(shape), " with padding='valid'");
        }
        shape = {oh, ow, conv ? spec.units : shape[2]};
        if (conv) {
          layer.kernel = parameter_count;
          slots.push_back({{spec.kh, spec.kw, layer.in_shape[2], spec.units}, parameter_count,
                            spec.kh * spec.kw * layer.in_shape[2] * spec.units});
          parameter_count += slots.back().size;
        }
        break;
      }
      case LayerSpec::Kind::Flatten:
        shape = {product(shape)};
        break;
      case LayerSpec::Kind::Dense:
        if (shape.size() != 1) {
          fail(where, " needs a flat per-sample input (features,), got ", shape_str(shape),
               ": add a Flatten layer before it");
        }
        if (spec.units < 1) fail(where, ": units must be >= 1, got ", spec.units);
        layer.kernel = parameter_count;
        slots.push_back({{shape[0], spec.units}, parameter_count, shape[0] * spec.units});
        parameter_count += slots.back().size;
        shape = {spec.units};
        break;
      case LayerSpec::Kind::Dropout:
        if (!(spec.rate >= 0.0 && spec.rate < 1.0)) {
          fail(where, ": rate must be in [0, 1), got ", spec.rate);
        }
        break;
    }
    const bool has_weights =
        spec.kind == LayerSpec::Kind::Conv2d || spec.kind == LayerSpec::Kind::Dense;
    if (has_weights && spec.use_bias) {
      layer.bias = parameter_count;
      slots.push_back({{spec.units}, parameter_count, spec.units});
      parameter_count += spec.units;
    }
    if (!has_weights && spec.activation != Activation::Linear) {
      fail(where, " takes no activation");
    }
    layer.out_shape = shape;
    layer.in_size = product(layer.in_shape);
    layer.out_size = product(shape);
    layers.push_back(std::move(layer));
  }
  const PlannedLayer& head = layers.back();
  if (head.spec.kind != LayerSpec::Kind::Dense || head.spec.activation == Activation::Relu) {
    fail("the last layer must be a Dense layer with activation 'softmax' (or 'linear' for logits), "
         "got layer ", layers.size() - 1, " (", kind_name(head.spec.kind), ")",
         head.spec.activation == Activation::Relu ? " with activation 'relu'" : "");
  }
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
    layers[i].pooled = layers[i].spec.kind == LayerSpec::Kind::Conv2d &&
                       layers[i + 1].spec.kind == LayerSpec::Kind::MaxPool2d;
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
  g.oh = layer.out_shape[0], g.ow = layer.out_shape[1];
  return g;
}

Gemm dense_forward_gemm(const PlannedLayer& dense, int64_t n, const float* x, const float* w,
                        const float* bias, float* y) {
  Gemm g;
  g.m = n, g.n = dense.spec.units, g.k = dense.in_size;
  g.a = x, g.lda = dense.in_size;
  g.b = w, g.ldb = dense.spec.units;
  g.c = y, g.ldc = dense.spec.units;
  g.bias = bias, g.relu = dense.spec.activation == Activation::Relu;
  return g;
}

Gemm dense_filter_gemm(const PlannedLayer& dense, int64_t n, const float* x, const float* dy,
                       float* dw) {
  Gemm g;
  g.m = dense.in_size, g.n = dense.spec.units, g.k = n;
  g.a = x, g.lda = dense.in_size, g.trans_a = true;
  g.b = dy, g.ldb = dense.spec.units;
  g.c = dw, g.ldc = dense.spec.units;
  return g;
}

Gemm dense_data_gemm(const PlannedLayer& dense, int64_t n, const float* dy, const float* w,
                     float* dx) {
  Gemm g;
  g.m = n, g.n = dense.in_size, g.k = dense.spec.units;
  g.a = dy, g.lda = dense.spec.units;
  g.b = w, g.ldb = dense.spec.units, g.trans_b = true;
  g.c = dx, g.ldc = dense.in_size;
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

DropoutStep dropout_step(double rate, uint64_t seed, size_t layer_index, int64_t iteration) {
  return {static_cast<uint32_t>(std::ceil(rate * 16777216.0)),
          static_cast<float>(1.0 / (1.0 - rate)),
          splitmix64(dropout_layer_stream(seed, layer_index) + static_cast<uint64_t>(iteration))};
}

}  // namespace fastnn
