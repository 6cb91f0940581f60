// ops.cpp — fastnn.ops' kernels, one binding each: check the arguments (naming what is
// wrong), allocate the outputs, then one OpCall on the chosen backend (op_call.h).
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <optional>

#include "bindings/arrays.h"
#include "bindings/op_call.h"
#include "engine/plan.h"

namespace fastnn::bindings {
namespace {

// ---- convolution ----------------------------------------------------------------------

Conv2dGeometry conv_geometry(const py::array& x, const py::array& w, int64_t stride_h,
                             int64_t stride_w, const std::string& padding) {
  check_array(x, "x", 4, "(N, H, W, C_in)");
  check_array(w, "w", 4, "(KH, KW, C_in, C_out)");
  check_positive(stride_h, "strides[0]");
  check_positive(stride_w, "strides[1]");
  const bool same = parse_padding(padding);
  if (w.shape(2) != x.shape(3)) {
    fail("w has ", w.shape(2), " input channels (axis 2 of HWIO shape ", shape_str(shape_of(w)),
         ") but x has ", x.shape(3), " channels (axis 3 of NHWC shape ", shape_str(shape_of(x)), ")");
  }
  Conv2dGeometry g{};
  g.n = x.shape(0), g.h = x.shape(1), g.w = x.shape(2), g.cin = x.shape(3);
  g.kh = w.shape(0), g.kw = w.shape(1), g.cout = w.shape(3);
  g.stride_h = stride_h, g.stride_w = stride_w;
  conv_axis(g.h, g.kh, stride_h, same, "height", "kernel", g.oh, g.pad_top);
  conv_axis(g.w, g.kw, stride_w, same, "width", "kernel", g.ow, g.pad_left);
  return g;
}

FloatArray conv2d(const FloatArray& x, const FloatArray& w, std::optional<FloatArray> b,
                  int64_t stride_h, int64_t stride_w, const std::string& padding, bool relu,
                  const std::string& device) {
  const Conv2dGeometry g = conv_geometry(x, w, stride_h, stride_w, padding);
  if (b) check_shape(*b, "b", {g.cout}, "one bias per output channel of w");
  FloatArray y({g.n, g.oh, g.ow, g.cout});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* wp = call.in(w.data(), w.size());
  const float* bp = b ? call.in(b->data(), b->size()) : nullptr;
  float* yp = call.out(y.mutable_data(), y.size());
  call.run(call.kernels().conv2d_workspace(g, call.threads()),
           [&](const Kernels& k, const Exec& ex) { k.conv2d_forward(g, xp, wp, bp, relu, yp, ex); });
  return y;
}

py::tuple conv2d_backward(const FloatArray& x, const FloatArray& w, const FloatArray& dy,
                          int64_t stride_h, int64_t stride_w, const std::string& padding,
                          const std::string& device) {
  const Conv2dGeometry g = conv_geometry(x, w, stride_h, stride_w, padding);
  check_shape(dy, "dy", {g.n, g.oh, g.ow, g.cout}, "the shape of conv2d's output");
  FloatArray dx(shape_of(x)), dw(shape_of(w)), db(std::vector<int64_t>{g.cout});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* wp = call.in(w.data(), w.size());
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  float* dwp = call.out(dw.mutable_data(), dw.size());
  float* dbp = call.out(db.mutable_data(), db.size());
  call.run(call.kernels().conv2d_workspace(g, call.threads()), [&](const Kernels& k, const Exec& ex) {
    k.conv2d_backward_data(g, wp, dyp, dxp, ex);
    k.conv2d_backward_filter(g, xp, dyp, dwp, dbp, /*accumulate=*/false, ex);
  });
  return py::make_tuple(dx, dw, db);
}

// ---- dense and gemm -----------------------------------------------------------------

void check_dense(const FloatArray& x, const FloatArray& w) {
  check_array(x, "x", 2, "(N, features_in)");
  check_array(w, "w", 2, "(features_in, features_out)");
  if (w.shape(0) != x.shape(1)) {
    fail("w has ", w.shape(0), " input features (axis 0 of shape ", shape_str(shape_of(w)),
         ") but x has ", x.shape(1), " (axis 1 of shape ", shape_str(shape_of(x)), ")");
  }
}

FloatArray dense(const FloatArray& x, const FloatArray& w, std::optional<FloatArray> b, bool relu,
                 const std::string& device) {
  check_dense(x, w);
  const int64_t n = x.shape(0), in = x.shape(1), out = w.shape(1);
  if (b) check_shape(*b, "b", {out}, "one bias per output feature of w");
  FloatArray y({n, out});
  OpCall call(device);
  Gemm mm;
  mm.m = n, mm.n = out, mm.k = in;
  mm.a = call.in(x.data(), x.size()), mm.lda = in;
  mm.b = call.in(w.data(), w.size()), mm.ldb = out;
  mm.c = call.out(y.mutable_data(), y.size()), mm.ldc = out;
  mm.bias = b ? call.in(b->data(), b->size()) : nullptr, mm.relu = relu;
  call.run(call.kernels().gemm_workspace(call.threads()),
           [&](const Kernels& k, const Exec& ex) { k.gemm(mm, ex); });
  return y;
}

py::tuple dense_backward(const FloatArray& x, const FloatArray& w, const FloatArray& dy,
                         const std::string& device) {
  check_dense(x, w);
  const int64_t n = x.shape(0), in = x.shape(1), out = w.shape(1);
  check_shape(dy, "dy", {n, out}, "the shape of dense's output");
  FloatArray dx({n, in}), dw({in, out}), db(std::vector<int64_t>{out});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* wp = call.in(w.data(), w.size());
  const float* dyp = call.in(dy.data(), dy.size());
  Gemm data;  // dx (n × in) = dy (n × out) · wᵀ (out × in)
  data.m = n, data.n = in, data.k = out;
  data.a = dyp, data.lda = out;
  data.b = wp, data.ldb = out, data.trans_b = true;
  data.c = call.out(dx.mutable_data(), dx.size()), data.ldc = in;
  Gemm filter;  // dw (in × out) = xᵀ (in × n) · dy (n × out)
  filter.m = in, filter.n = out, filter.k = n;
  filter.a = xp, filter.lda = in, filter.trans_a = true;
  filter.b = dyp, filter.ldb = out;
  filter.c = call.out(dw.mutable_data(), dw.size()), filter.ldc = out;
  float* dbp = call.out(db.mutable_data(), db.size());
  call.run(call.kernels().gemm_workspace(call.threads()), [&](const Kernels& k, const Exec& ex) {
    k.gemm(data, ex);
    k.gemm(filter, ex);
    k.sum_rows(n, out, dyp, dbp, ex);
  });
  return py::make_tuple(dx, dw, db);
}

FloatArray gemm(const FloatArray& a, const FloatArray& b, bool trans_a, bool trans_b,
                const std::string& device) {
  check_array(a, "a", 2, trans_a ? "(K, M)" : "(M, K)");
  check_array(b, "b", 2, trans_b ? "(N, K)" : "(K, N)");
  const int64_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
  const int64_t n = trans_b ? b.shape(0) : b.shape(1), kb = trans_b ? b.shape(1) : b.shape(0);
  if (k != kb) {
    fail("inner dimensions differ: op(a) is ", m, "x", k, " (a has shape ", shape_str(shape_of(a)),
         ", trans_a=", trans_a ? "True" : "False", ") but op(b) is ", kb, "x", n,
         " (b has shape ", shape_str(shape_of(b)), ", trans_b=", trans_b ? "True" : "False", ")");
  }
  FloatArray c({m, n});
  OpCall call(device);
  Gemm mm;
  mm.m = m, mm.n = n, mm.k = k;
  mm.a = call.in(a.data(), a.size()), mm.lda = a.shape(1), mm.trans_a = trans_a;
  mm.b = call.in(b.data(), b.size()), mm.ldb = b.shape(1), mm.trans_b = trans_b;
  mm.c = call.out(c.mutable_data(), c.size()), mm.ldc = n;
  call.run(call.kernels().gemm_workspace(call.threads()),
           [&](const Kernels& kt, const Exec& ex) { kt.gemm(mm, ex); });
  return c;
}

// ---- pooling ------------------------------------------------------------------------

}  // namespace

// Also the geometry of ops_pool_norm.cpp's average pooling.
Pool2dGeometry pool_geometry(const py::array& x, int64_t pool_h, int64_t pool_w,
                             int64_t stride_h, int64_t stride_w, const std::string& padding) {
  check_array(x, "x", 4, "(N, H, W, C)");
  check_positive(pool_h, "pool_size[0]");
  check_positive(pool_w, "pool_size[1]");
  check_positive(stride_h, "strides[0]");
  check_positive(stride_w, "strides[1]");
  const bool same = parse_padding(padding);
  Pool2dGeometry g{};
  g.n = x.shape(0), g.h = x.shape(1), g.w = x.shape(2), g.c = x.shape(3);
  g.pool_h = pool_h, g.pool_w = pool_w, g.stride_h = stride_h, g.stride_w = stride_w;
  conv_axis(g.h, pool_h, stride_h, same, "height", "pool", g.oh, g.pad_top);
  conv_axis(g.w, pool_w, stride_w, same, "width", "pool", g.ow, g.pad_left);
  if (pool_h * pool_w > std::numeric_limits<int32_t>::max()) {
    fail("pool_size (", pool_h, ", ", pool_w, ") has more than 2**31 - 1 elements per window");
  }
  return g;
}

namespace {

FloatArray maxpool2d(const FloatArray& x, int64_t pool_h, int64_t pool_w, int64_t stride_h,
                     int64_t stride_w, const std::string& padding, const std::string& device) {
  const Pool2dGeometry g = pool_geometry(x, pool_h, pool_w, stride_h, stride_w, padding);
  FloatArray y({g.n, g.oh, g.ow, g.c});
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  float* yp = call.out(y.mutable_data(), y.size());
  int32_t* argmax = call.scratch<int32_t>(y.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.maxpool2d_forward(g, xp, yp, argmax, ex); });
  return y;
}

FloatArray maxpool2d_backward(const FloatArray& x, const FloatArray& dy, int64_t pool_h,
                              int64_t pool_w, int64_t stride_h, int64_t stride_w,
                              const std::string& padding, const std::string& device) {
  const Pool2dGeometry g = pool_geometry(x, pool_h, pool_w, stride_h, stride_w, padding);
  check_shape(dy, "dy", {g.n, g.oh, g.ow, g.c}, "the shape of maxpool2d's output");
  FloatArray dx(shape_of(x));
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  float* y = call.scratch<float>(dy.size());
  int32_t* argmax = call.scratch<int32_t>(dy.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) {
    k.maxpool2d_forward(g, xp, y, argmax, ex);  // the argmax the gradient follows
    k.maxpool2d_backward(g, dyp, argmax, nullptr, dxp, ex);
  });
  return dx;
}

// ---- element-wise: relu, dropout -------------------------------------------------------

FloatArray relu(const FloatArray& x, const std::string& device) {
  check_nonempty(x, "x");
  FloatArray y(shape_of(x));
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  float* yp = call.out(y.mutable_data(), y.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.relu_forward(x.size(), xp, yp, ex); });
  return y;
}

FloatArray relu_backward(const FloatArray& x, const FloatArray& dy, const std::string& device) {
  check_nonempty(x, "x");
  check_shape(dy, "dy", shape_of(x), "the shape of x");
  FloatArray dx(shape_of(x));
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  const float* dyp = call.in(dy.data(), dy.size());
  float* dxp = call.out(dx.mutable_data(), dx.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.relu_backward(x.size(), xp, dyp, dxp, ex); });
  return dx;
}

py::tuple dropout(const FloatArray& x, double rate, uint64_t seed, int64_t layer_index,
                  int64_t iteration, const std::string& device) {
  check_nonempty(x, "x");
  if (!(rate >= 0.0 && rate < 1.0)) fail("rate must be in [0, 1), got ", rate);
  if (layer_index < 0) fail("layer_index must be >= 0, got ", layer_index);
  if (iteration < 0) fail("iteration must be >= 0, got ", iteration);
  const DropoutStep step = dropout_step(rate, seed, static_cast<size_t>(layer_index), iteration);
  FloatArray y(shape_of(x)), mask(shape_of(x));
  OpCall call(device);
  const float* xp = call.in(x.data(), x.size());
  float* yp = call.out(y.mutable_data(), y.size());
  float* maskp = call.out(mask.mutable_data(), mask.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) {
    k.dropout_forward(x.size(), xp, yp, maskp, step, ex);
  });
  return py::make_tuple(y, mask);
}

// ---- softmax, softmax cross-entropy ---------------------------------------------------

void check_finite_logits(const FloatArray& logits) {
  for (int64_t i = 0; i < logits.size(); ++i) {
    if (!std::isfinite(logits.data()[i])) {
      fail("logits must be finite, got ", logits.data()[i], " at flat index ", i);
    }
  }
}

FloatArray softmax(const FloatArray& logits, const std::string& device) {
  check_array(logits, "logits", 2, "(N, classes)");
  check_finite_logits(logits);
  const int64_t n = logits.shape(0), classes = logits.shape(1);
  FloatArray probs({n, classes});
  OpCall call(device);
  const float* zp = call.in(logits.data(), logits.size());
  float* pp = call.out(probs.mutable_data(), probs.size());
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.softmax(n, classes, zp, pp, ex); });
  return probs;
}

py::tuple softmax_cross_entropy(const FloatArray& logits, const LabelArray& labels,
                                const std::string& device) {
  check_array(logits, "logits", 2, "(N, classes)");
  const int64_t n = logits.shape(0), classes = logits.shape(1);
  if (labels.ndim() != 1 || labels.shape(0) != n) {
    fail("labels must have shape (", n, ",) (one integer class per row of logits), got ",
         shape_str(shape_of(labels)));
  }
  std::vector<float> labels32(n);  // class indices, exact in float below 2^24
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = labels.data()[i];
    if (label < 0 || label >= classes) {
      fail("labels[", i, "] = ", label, " is out of range: expected 0 <= label < ", classes,
           " (the number of columns of logits)");
    }
    labels32[i] = static_cast<float>(label);
  }
  check_finite_logits(logits);
  FloatArray dlogits({n, classes});
  double loss = 0.0;
  OpCall call(device);
  const float* zp = call.in(logits.data(), logits.size());
  const float* lp = call.in(labels32.data(), n);
  float* dp = call.out(dlogits.mutable_data(), dlogits.size());
  double* lossp = call.out(&loss, 1);
  call.run(loss_workspace(n), [&](const Kernels& k, const Exec& ex) {
    k.softmax_cross_entropy(n, classes, zp, lp, dp, lossp, ex);
  });
  return py::make_tuple(loss, dlogits);
}

// ---- optimizers -----------------------------------------------------------------------

void adam_update(const py::array& param_in, const FloatArray& grad, const py::array& m_in,
                 const py::array& v_in, int64_t step, double lr, double beta_1, double beta_2,
                 double epsilon, const std::string& device) {
  py::array_t<float> param = in_place(param_in, "param");
  py::array_t<float> m = in_place(m_in, "m"), v = in_place(v_in, "v");
  check_nonempty(param, "param");
  check_shape(grad, "grad", shape_of(param), "the shape of param");
  check_shape(m, "m", shape_of(param), "the shape of param");
  check_shape(v, "v", shape_of(param), "the shape of param");
  if (step < 1) fail("step must be >= 1 (Adam counts steps from 1), got ", step);
  if (!std::isfinite(lr)) fail("lr must be finite, got ", lr);
  if (!(beta_1 >= 0.0 && beta_1 < 1.0)) fail("beta_1 must be in [0, 1), got ", beta_1);
  if (!(beta_2 >= 0.0 && beta_2 < 1.0)) fail("beta_2 must be in [0, 1), got ", beta_2);
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon)) fail("epsilon must be >= 0 and finite, got ", epsilon);
  OptimizerSpec spec;
  spec.beta_1 = beta_1, spec.beta_2 = beta_2, spec.epsilon = epsilon;
  const AdamStep s = adam_step(spec, lr, step - 1);
  const int64_t count = param.size();
  OpCall call(device);
  float* pp = call.inout(param.mutable_data(), count);
  const float* gp = call.in(grad.data(), count);
  float* mp = call.inout(m.mutable_data(), count);
  float* vp = call.inout(v.mutable_data(), count);
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.adam_update(count, pp, gp, mp, vp, s, ex); });
}

void sgd_update(const py::array& param_in, const FloatArray& grad,
                const std::optional<py::array>& velocity_in, double lr, double momentum,
                bool nesterov, const std::string& device) {
  py::array_t<float> param = in_place(param_in, "param");
  check_nonempty(param, "param");
  check_shape(grad, "grad", shape_of(param), "the shape of param");
  if (!std::isfinite(lr)) fail("lr must be finite, got ", lr);
  if (!(momentum >= 0.0 && momentum <= 1.0)) fail("momentum must be in [0, 1], got ", momentum);
  std::optional<py::array_t<float>> velocity;
  if (velocity_in) {
    velocity = in_place(*velocity_in, "velocity");
    check_shape(*velocity, "velocity", shape_of(param), "the shape of param");
  } else if (momentum != 0.0) {
    fail("velocity must be given when momentum is not 0 (got momentum=", momentum, ")");
  }
  const SgdStep s{static_cast<float>(lr), static_cast<float>(momentum), nesterov};
  const int64_t count = param.size();
  OpCall call(device);
  float* pp = call.inout(param.mutable_data(), count);
  const float* gp = call.in(grad.data(), count);
  float* velp = velocity && momentum != 0.0 ? call.inout(velocity->mutable_data(), count) : nullptr;
  call.run(0, [&](const Kernels& k, const Exec& ex) { k.sgd_update(count, pp, gp, velp, s, ex); });
}

}  // namespace

void bind_ops(py::module_& m) {
  m.def("conv2d", &conv2d, py::arg("x"), py::arg("w"), py::arg("b").none(true),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("padding"), py::arg("relu") = false,
        py::arg("device") = "cpu");
  m.def("conv2d_backward", &conv2d_backward, py::arg("x"), py::arg("w"), py::arg("dy"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("padding"), py::arg("device") = "cpu");
  m.def("dense", &dense, py::arg("x"), py::arg("w"), py::arg("b").none(true),
        py::arg("relu") = false, py::arg("device") = "cpu");
  m.def("dense_backward", &dense_backward, py::arg("x"), py::arg("w"), py::arg("dy"),
        py::arg("device") = "cpu");
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
        py::arg("device") = "cpu");
  m.def("maxpool2d", &maxpool2d, py::arg("x"), py::arg("pool_h"), py::arg("pool_w"),
        py::arg("stride_h"), py::arg("stride_w"), py::arg("padding") = "valid",
        py::arg("device") = "cpu");
  m.def("maxpool2d_backward", &maxpool2d_backward, py::arg("x"), py::arg("dy"),
        py::arg("pool_h"), py::arg("pool_w"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("padding") = "valid", py::arg("device") = "cpu");
  m.def("relu", &relu, py::arg("x"), py::arg("device") = "cpu");
  m.def("relu_backward", &relu_backward, py::arg("x"), py::arg("dy"), py::arg("device") = "cpu");
  m.def("dropout", &dropout, py::arg("x"), py::arg("rate"), py::arg("seed"),
        py::arg("layer_index"), py::arg("iteration"), py::arg("device") = "cpu");
  m.def("softmax", &softmax, py::arg("logits"), py::arg("device") = "cpu");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("device") = "cpu");
  m.def("adam_update", &adam_update, py::arg("param"), py::arg("grad"), py::arg("m"),
        py::arg("v"), py::arg("step"), py::arg("lr"), py::arg("beta_1"), py::arg("beta_2"),
        py::arg("epsilon"), py::arg("device") = "cpu");
  m.def("sgd_update", &sgd_update, py::arg("param"), py::arg("grad"), py::arg("velocity").none(true),
        py::arg("lr"), py::arg("momentum"), py::arg("nesterov"), py::arg("device") = "cpu");
}

}  // namespace fastnn::bindings
