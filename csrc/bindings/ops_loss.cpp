// ops_loss.cpp — fastnn.ops' losses beyond softmax_cross_entropy (categorical with any
// targets, sigmoid cross-entropy, regression): check the arguments, then one OpCall on the
// chosen backend (op_call.h). Each returns (mean loss, gradient wrt its first input).
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "bindings/arrays.h"
#include "bindings/op_call.h"

namespace fastnn::bindings {
namespace {

void check_finite(const FloatArray& a, const char* name) {
  for (int64_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a.data()[i])) {
      fail(name, " must be finite, got ", a.data()[i], " at flat index ", i);
    }
  }
}

// The checks every loss makes: `targets` shaped like `input`, both finite.
void check_pair(const FloatArray& input, const char* input_name, const FloatArray& targets) {
  check_shape(targets, "targets", shape_of(input),
              (std::string("one target per element of ") + input_name).c_str());
  check_finite(input, input_name);
  check_finite(targets, "targets");
}

// One loss kernel over input and targets: (mean loss, gradient shaped like input).
template <class F>
py::tuple run_loss(const FloatArray& input, const FloatArray& targets, int64_t rows,
                   const std::string& device, F&& kernel) {
  FloatArray grad(shape_of(input));
  double loss = 0.0;
  OpCall call(device);
  const float* xp = call.in(input.data(), input.size());
  const float* tp = call.in(targets.data(), targets.size());
  float* gp = call.out(grad.mutable_data(), grad.size());
  double* lossp = call.out(&loss, 1);
  call.run(loss_workspace(rows), [&](const Kernels& k, const Exec& ex) {
    kernel(k, xp, tp, gp, lossp, ex);
  });
  return py::make_tuple(loss, grad);
}

py::tuple categorical_cross_entropy(const FloatArray& logits, const FloatArray& targets,
                                    const std::string& device) {
  check_array(logits, "logits", 2, "(N, classes)");
  check_pair(logits, "logits", targets);
  const int64_t n = logits.shape(0), classes = logits.shape(1);
  return run_loss(logits, targets, n, device,
                  [&](const Kernels& k, const float* z, const float* t, float* dz, double* loss,
                      const Exec& ex) {
                    k.categorical_cross_entropy(n, classes, z, t, dz, loss, ex);
                  });
}

py::tuple sigmoid_cross_entropy(const FloatArray& logits, const FloatArray& targets,
                                const std::string& device) {
  check_nonempty(logits, "logits");
  check_pair(logits, "logits", targets);
  const int64_t count = logits.size();
  return run_loss(logits, targets, count, device,
                  [&](const Kernels& k, const float* z, const float* t, float* dz, double* loss,
                      const Exec& ex) { k.sigmoid_cross_entropy(count, z, t, dz, loss, ex); });
}

RegressionLoss regression_spec(const std::string& kind, double delta) {
  RegressionLoss r;
  if (kind == "mean_squared_error") {
    r.kind = RegressionLoss::Kind::MeanSquared;
  } else if (kind == "mean_absolute_error") {
    r.kind = RegressionLoss::Kind::MeanAbsolute;
  } else if (kind == "huber") {
    r.kind = RegressionLoss::Kind::Huber;
  } else {
    fail("kind must be 'mean_squared_error', 'mean_absolute_error' or 'huber', got '", kind,
         "'");
  }
  // Only the Huber loss reads delta; the kernels take it as a float, which must be > 0.
  r.delta = static_cast<float>(delta);
  if (r.kind == RegressionLoss::Kind::Huber && !(r.delta > 0.0f && std::isfinite(r.delta))) {
    fail("delta must be > 0 and finite in float32 for kind='huber', got ", delta);
  }
  return r;
}

py::tuple regression_loss(const FloatArray& y, const FloatArray& targets, const std::string& kind,
                          double delta, const std::string& device) {
  const RegressionLoss r = regression_spec(kind, delta);
  check_nonempty(y, "y");
  check_pair(y, "y", targets);
  const int64_t count = y.size();
  return run_loss(y, targets, count, device,
                  [&](const Kernels& k, const float* yp, const float* t, float* dy, double* loss,
                      const Exec& ex) { k.regression_loss(r, count, yp, t, dy, loss, ex); });
}

}  // namespace

void bind_loss_ops(py::module_& m) {
  m.def("categorical_cross_entropy", &categorical_cross_entropy, py::arg("logits"),
        py::arg("targets"), py::arg("device") = "cpu");
  m.def("sigmoid_cross_entropy", &sigmoid_cross_entropy, py::arg("logits"), py::arg("targets"),
        py::arg("device") = "cpu");
  m.def("regression_loss", &regression_loss, py::arg("y"), py::arg("targets"), py::arg("kind"),
        py::arg("delta") = 1.0, py::arg("device") = "cpu");
}

}  // namespace fastnn::bindings
