// ops_pool_norm.cpp — fastnn.ops' average pooling and batch normalisation: check the
// arguments (naming what is wrong), allocate the outputs, then one OpCall on the chosen
// backend (op_call.h).
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "bindings/arrays.h"
#include "bindings/op_call.h"

namespace fastnn::bindings {

// ops.cpp: the checked geometry of a pooling call, 'valid' or 'same'.
Pool2dGeometry pool_geometry(const py::array& x, int64_t pool_h, int64_t pool_w,
                             int64_t stride_h, int64_t stride_w, const std::string& padding);

namespace {

// ---- average pooling ------------------------------------------------------------------

FloatArray avgpool2d(const FloatArray& x, int64_t pool_h, int64_t pool_w, int64_t stride_h,
                     int64_t stride_w, const std::string& padding, const std::string& device) {
  const Pool2dGeometry g = pool_geometry(x, pool_h, pool_w, stride_h, stride_w, padding);
  FloatArray y({g.n, g.oh, g.ow, g.c});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  float* yp = call.out(y.mutable_data(), y.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.avgpool2d_forward(g, xp, yp, ex); });
  return y;
}

// x gives only the input's shape: the gradient of a mean does not depend on the values.
FloatArray avgpool2d_backward(const FloatArray& x, const FloatArray& dy, int64_t pool_h,
                              int64_t pool_w, int64_t stride_h, int64_t stride_w,
                              const std::string& padding, const std::string& device) {
  const Pool2dGeometry g = pool_geometry(x, pool_h, pool_w, stride_h, stride_w, padding);
  check_shape(dy, "dy", {g.n, g.oh, g.ow, g.c}, "the shape of avgpool2d's output");
  FloatArray dx(shape_of(x));
  OpCall call(device);
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.avgpool2d_backward(g, dyp, dxp, ex); });
  return dx;
}

// ---- batch normalisation ----------------------------------------------------------------

// x is (..., C): rows = the product of every axis but the last.
BatchNormGeometry batchnorm_geometry(const py::array& x) {
  if (x.ndim() < 2) {
    fail("x must have at least 2 dimensions, (N, C) or (N, H, W, C), normalised over the last "
         "axis; got shape ", shape_str(shape_of(x)));
  }
  check_nonempty(x, "x");
  BatchNormGeometry g{};
  g.channels = x.shape(x.ndim() - 1);
  g.rows = x.size() / g.channels;
  return g;
}

void check_per_channel(const py::array& a, const char* name, const BatchNormGeometry& g) {
  check_shape(a, name, {g.channels}, "one value per channel: the last axis of x");
}

// A float32 copy of a per-channel array, for the outputs that start from an input.
FloatArray copy_of(const FloatArray& a) {
  FloatArray copy(shape_of(a));
  std::copy(a.data(), a.data() + a.size(), copy.mutable_data());
  return copy;
}

py::tuple batchnorm(const FloatArray& x, std::optional<FloatArray> gamma,
                    std::optional<FloatArray> beta, const FloatArray& moving_mean,
                    const FloatArray& moving_variance, double epsilon, double momentum,
                    bool training, const std::string& device) {
  BatchNormGeometry g = batchnorm_geometry(x);
  if (!(epsilon > 0.0) || !std::isfinite(epsilon) || !(static_cast<float>(epsilon) > 0.0f)) {
    fail("epsilon must be > 0 and finite (in float32), got ", epsilon);
  }
  if (!(momentum >= 0.0 && momentum <= 1.0)) fail("momentum must be in [0, 1], got ", momentum);
  g.epsilon = static_cast<float>(epsilon);
  g.momentum = static_cast<float>(momentum);
  if (gamma) check_per_channel(*gamma, "gamma", g);
  if (beta) check_per_channel(*beta, "beta", g);
  check_per_channel(moving_mean, "moving_mean", g);
  check_per_channel(moving_variance, "moving_variance", g);
  FloatArray y(shape_of(x));
  FloatArray new_mean = copy_of(moving_mean), new_variance = copy_of(moving_variance);
  FloatArray mean = copy_of(moving_mean), inv_std(std::vector<int64_t>{g.channels});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* gp = gamma ? call.in(gamma->data(), g.channels) : nullptr;
  const float* bp = beta ? call.in(beta->data(), g.channels) : nullptr;
  float* yp = call.out(y.mutable_data(), y.size());
  if (!training) {  // the moving statistics, unchanged, stand for the batch's
    for (int64_t c = 0; c < g.channels; ++c) {
      inv_std.mutable_data()[c] = static_cast<float>(
          1.0 / std::sqrt(static_cast<double>(moving_variance.data()[c]) + g.epsilon));
    }
    const float* mmp = call.in(moving_mean.data(), g.channels);
    const float* mvp = call.in(moving_variance.data(), g.channels);
    call.run(0, [&](const Kernels& k, const Exec& ex) {
      k.batchnorm_inference(g, xp, gp, bp, mmp, mvp, yp, ex);
    });
    return py::make_tuple(y, mean, inv_std, new_mean, new_variance);
  }
  float* meanp = call.out(mean.mutable_data(), g.channels);
  float* inv_stdp = call.out(inv_std.mutable_data(), g.channels);
  float* mmp = call.inout(new_mean.mutable_data(), g.channels);
  float* mvp = call.inout(new_variance.mutable_data(), g.channels);
  call.run(call.kernels().batchnorm_workspace(g, call.threads()),
           [&](const Kernels& k, const Exec& ex) {
             k.batchnorm_forward_training(g, xp, gp, bp, yp, meanp, inv_stdp, mmp, mvp, ex);
           });
  return py::make_tuple(y, mean, inv_std, new_mean, new_variance);
}

py::tuple batchnorm_backward(const FloatArray& x, std::optional<FloatArray> gamma,
                             const FloatArray& mean, const FloatArray& inv_std,
                             const FloatArray& dy, const std::string& device) {
  const BatchNormGeometry g = batchnorm_geometry(x);
  if (gamma) check_per_channel(*gamma, "gamma", g);
  check_per_channel(mean, "mean", g);
  check_per_channel(inv_std, "inv_std", g);
  check_shape(dy, "dy", shape_of(x), "the shape of x");
  FloatArray dx(shape_of(x)), dgamma(std::vector<int64_t>{g.channels}),
      dbeta(std::vector<int64_t>{g.channels});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* gp = gamma ? call.in(gamma->data(), g.channels) : nullptr;
  const float* meanp = call.in(mean.data(), g.channels);
  const float* inv_stdp = call.in(inv_std.data(), g.channels);
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  float* dgp = call.out(dgamma.mutable_data(), g.channels);
  float* dbp = call.out(dbeta.mutable_data(), g.channels);
  call.run(call.kernels().batchnorm_workspace(g, call.threads()),
           [&](const Kernels& k, const Exec& ex) {
             k.batchnorm_backward(g, xp, gp, meanp, inv_stdp, dyp, dxp, dgp, dbp, ex);
           });
  return py::make_tuple(dx, dgamma, dbeta);
}

}  // namespace

void bind_pool_norm_ops(py::module_& m) {
  m.def("avgpool2d", &avgpool2d, py::arg("x"), py::arg("pool_h"), py::arg("pool_w"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("padding") = "valid",
        py::arg("device") = "cpu");
  m.def("avgpool2d_backward", &avgpool2d_backward, py::arg("x"), py::arg("dy"),
        py::arg("pool_h"), py::arg("pool_w"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("padding") = "valid", py::arg("device") = "cpu");
  m.def("batchnorm", &batchnorm, py::arg("x"), py::arg("gamma").none(true),
        py::arg("beta").none(true), py::arg("moving_mean"), py::arg("moving_variance"),
        py::arg("epsilon"), py::arg("momentum"), py::arg("training"), py::arg("device") = "cpu");
  m.def("batchnorm_backward", &batchnorm_backward, py::arg("x"), py::arg("gamma").none(true),
        py::arg("mean"), py::arg("inv_std"), py::arg("dy"), py::arg("device") = "cpu");
}

}  // namespace fastnn::bindings
