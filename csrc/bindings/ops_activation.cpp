// ops_activation.cpp — fastnn.ops' element-wise activations (every ops.h Act but Softmax,
// by Keras's name) and the softmax's gradient: check the arguments, then one OpCall on the
// chosen backend (op_call.h). Also the name -> Act table that activation_names.h exposes.
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "bindings/activation_names.h"
#include "bindings/arrays.h"
#include "bindings/op_call.h"

namespace fastnn::bindings {
namespace {

struct ActivationName {
  const char* name;
  Act kind;
};

// Keras 3's names; silu and hard_silu are its aliases of swish and hard_swish. relu_clipped
// is layers.ReLU's general form, affine layers.Rescaling's.
constexpr ActivationName kActivationNames[] = {
    {"linear", Act::Linear},       {"relu", Act::Relu},
    {"relu_clipped", Act::ReluClipped}, {"relu6", Act::Relu6},
    {"sigmoid", Act::Sigmoid},     {"tanh", Act::Tanh},
    {"elu", Act::Elu},             {"selu", Act::Selu},
    {"gelu", Act::Gelu},           {"gelu_tanh", Act::GeluTanh},
    {"swish", Act::Swish},         {"silu", Act::Swish},
    {"leaky_relu", Act::LeakyRelu}, {"softplus", Act::Softplus},
    {"softsign", Act::Softsign},   {"hard_sigmoid", Act::HardSigmoid},
    {"hard_swish", Act::HardSwish}, {"hard_silu", Act::HardSwish},
    {"exponential", Act::Exponential}, {"mish", Act::Mish},
    {"affine", Act::Affine},       {"softmax", Act::Softmax},
};

bool parse_activation(const std::string& name, Act* kind) {
  for (const ActivationName& entry : kActivationNames) {
    if (name == entry.name) {
      *kind = entry.kind;
      return true;
    }
  }
  return false;
}

// 'linear', 'relu', ... for messages; without softmax when only element-wise kinds are meant.
std::string known_names(bool with_softmax) {
  std::string list;
  for (const ActivationName& entry : kActivationNames) {
    if (entry.kind == Act::Softmax && !with_softmax) continue;
    list += (list.empty() ? "'" : ", '") + std::string(entry.name) + "'";
  }
  return list;
}

// The element-wise kind `kind` names, with its parameters checked: finite as float32, but
// for relu_clipped's beta (max_value), which may be +inf (no maximum).
ActivationSpec activation_spec(const std::string& kind, double alpha, double beta,
                               double gamma) {
  ActivationSpec spec;
  if (!parse_activation(kind, &spec.kind)) {
    fail("kind must be one of ", known_names(false), ", got '", kind, "'");
  }
  if (spec.kind == Act::Softmax) {
    fail("kind 'softmax' is not element-wise: use softmax (forward) and softmax_backward");
  }
  spec.alpha = static_cast<float>(alpha);
  spec.beta = static_cast<float>(beta);
  spec.gamma = static_cast<float>(gamma);
  if (!std::isfinite(spec.alpha)) fail("alpha must be finite in float32, got ", alpha);
  if (!std::isfinite(spec.gamma)) fail("gamma must be finite in float32, got ", gamma);
  const bool no_maximum = spec.kind == Act::ReluClipped && std::isinf(beta) && beta > 0;
  if (!std::isfinite(spec.beta) && !no_maximum) {
    fail("beta must be finite in float32 (or +inf with kind 'relu_clipped': no max_value), "
         "got ", beta);
  }
  return spec;
}

FloatArray activation(const FloatArray& x, const std::string& kind, double alpha, double beta,
                      double gamma, const std::string& device) {
  const ActivationSpec spec = activation_spec(kind, alpha, beta, gamma);
  check_nonempty(x, "x");
  FloatArray y(shape_of(x));
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  float* yp = call.out(y.mutable_data(), y.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) {
    k.activation_forward(spec, x.size(), xp, yp, ex);
  });
  return y;
}

FloatArray activation_backward(const FloatArray& x, const FloatArray& y, const FloatArray& dy,
                               const std::string& kind, double alpha, double beta,
                               double gamma, const std::string& device) {
  const ActivationSpec spec = activation_spec(kind, alpha, beta, gamma);
  check_nonempty(x, "x");
  check_shape(y, "y", shape_of(x), "the activation's output, the shape of x");
  check_shape(dy, "dy", shape_of(x), "the shape of x");
  FloatArray dx(shape_of(x));
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* yp = call.in(y.data(), y.size());
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) {
    k.activation_backward(spec, x.size(), xp, yp, dyp, dxp, ex);
  });
  return dx;
}

FloatArray softmax_backward(const FloatArray& y, const FloatArray& dy, const std::string& device) {
  check_array(y, "y", 2, "(N, classes)");
  check_shape(dy, "dy", shape_of(y), "the shape of y");
  const int64_t n = y.shape(0), classes = y.shape(1);
  FloatArray dx({n, classes});
  OpCall call(device);
  const float* yp = call.in(y.data(), y.size());
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) {
    k.softmax_backward(n, classes, yp, dyp, dxp, ex);
  });
  return dx;
}

}  // namespace

Act activation_kind(const std::string& name) {
  Act kind;
  if (!parse_activation(name, &kind)) {
    fail("unknown activation '", name, "': expected one of ", known_names(true));
  }
  return kind;
}

void bind_activation_ops(py::module_& m) {
  m.def("activation", &activation, py::arg("x"), py::arg("kind"), py::arg("alpha") = 0.0,
        py::arg("beta") = 0.0, py::arg("gamma") = 0.0, py::arg("device") = "cpu");
  m.def("activation_backward", &activation_backward, py::arg("x"), py::arg("y"), py::arg("dy"),
        py::arg("kind"), py::arg("alpha") = 0.0, py::arg("beta") = 0.0, py::arg("gamma") = 0.0,
        py::arg("device") = "cpu");
  m.def("softmax_backward", &softmax_backward, py::arg("y"), py::arg("dy"),
        py::arg("device") = "cpu");
}

}  // namespace fastnn::bindings
