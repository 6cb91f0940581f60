// bindings.cpp — the Python boundary of fastnn._C. Every argument is checked here, with
// a message naming it, what was expected and what came (Error -> ValueError); kernels
// then assume valid input. Inputs are converted to C-contiguous float32 on the way in;
// the GIL is released around every kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "common.h"
#include "cpu/dispatch.h"
#include "cpu/threads.h"
#include "engine/net.h"
#ifdef FASTNN_WITH_CUDA
#include "engine/cuda_net.h"
#endif
#include "ops.h"
#include "cuda/ops_host.h"
#ifdef FASTNN_WITH_CUDA
#include "cuda/device.h"
#endif

namespace py = pybind11;
using fastnn::fail;
using fastnn::shape_str;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using LabelArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// Rank and non-empty dimensions; `layout` names the axes, e.g. "(N, H, W, C)".
void check_array(const py::array& a, const char* name, int rank, const char* layout) {
  if (a.ndim() != rank) {
    fail(name, " must be a ", rank, "-D array ", layout, ", got shape ", shape_str(shape_of(a)));
  }
  for (int i = 0; i < rank; ++i) {
    if (a.shape(i) == 0) {
      fail(name, " must not be empty: every dimension of ", layout, " must be >= 1, got shape ",
           shape_str(shape_of(a)));
    }
  }
}

void check_shape(const py::array& a, const char* name, const std::vector<int64_t>& expected,
                 const char* why) {
  if (shape_of(a) != expected) {
    fail(name, " must have shape ", shape_str(expected), " (", why, "), got ",
         shape_str(shape_of(a)));
  }
}

void check_positive(int64_t value, const char* name) {
  if (value < 1) fail(name, " must be >= 1, got ", value);
}

// A writable float32 C-contiguous array that an op updates in place.
py::array_t<float> in_place(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<float>())) {
    fail(name, " must be a float32 array (it is updated in place), got dtype ",
         std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) fail(name, " must be C-contiguous (it is updated in place)");
  if (!a.writeable()) fail(name, " must be writable (it is updated in place)");
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

fastnn::Exec exec_with(fastnn::AlignedBuffer& workspace, int64_t floats, int threads) {
  try {
    workspace.resize(std::max<int64_t>(floats, 1));
  } catch (const std::bad_alloc&) {
    const std::string message = "out of memory: this op needs " +
                                std::to_string(floats * 4.0 / (1 << 30)) + " GiB of scratch memory";
    PyErr_SetString(PyExc_MemoryError, message.c_str());
    throw py::error_already_set();
  }
  return {threads, workspace.data()};
}

// ---- device: where an op runs --------------------------------------------------------

// True for 'cuda' (a build without CUDA refuses it), false for 'cpu'.
bool wants_cuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device != "cuda") fail("device must be 'cpu' or 'cuda', got '", device, "'");
#ifndef FASTNN_WITH_CUDA
  throw std::runtime_error(
      "device='cuda': this fastnn was built without CUDA (no nvcc was found when it was "
      "installed, or FASTNN_CUDA=OFF); reinstall with the CUDA toolkit on PATH, or use "
      "device='cpu'");
#endif
  return true;
}

// Runs `cpu` or, when on_cuda (from wants_cuda), `cuda` (host arrays in, host arrays out)
// with the GIL released. Without CUDA, wants_cuda has refused already and `cuda` is never
// instantiated.
template <class Cpu, class Cuda>
void run_on(bool on_cuda, Cpu&& cpu, Cuda&& cuda) {
  if (on_cuda) {
#ifdef FASTNN_WITH_CUDA
    py::gil_scoped_release nogil;
    cuda();
#endif
    return;
  }
  py::gil_scoped_release nogil;
  cpu();
}

// ---- convolution ----------------------------------------------------------------------

// Keras's output size and leading pad for one spatial axis, or an error naming it.
void conv_axis(int64_t size, int64_t kernel, int64_t stride, bool same, const char* axis,
               const char* what, int64_t& out, int64_t& pad_before) {
  if (!fastnn::conv_output_size(size, kernel, stride, same, &out, &pad_before)) {
    fail(what, " ", axis, " (", kernel, ") is larger than the input ", axis, " (", size,
         ") with padding='valid'");
  }
}

bool parse_padding(const std::string& padding) {
  if (padding == "same") return true;
  if (padding == "valid") return false;
  fail("padding must be 'valid' or 'same', got '", padding, "'");
}

fastnn::Conv2dGeometry conv_geometry(const py::array& x, const py::array& w, int64_t stride_h,
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
  fastnn::Conv2dGeometry g{};
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
  const fastnn::Conv2dGeometry g = conv_geometry(x, w, stride_h, stride_w, padding);
  if (b) check_shape(*b, "b", {g.cout}, "one bias per output channel of w");
  FloatArray y({g.n, g.oh, g.ow, g.cout});
  const int threads = fastnn::get_num_threads();
  fastnn::AlignedBuffer ws;
  const bool cuda = wants_cuda(device);
  const fastnn::Exec ex =
      exec_with(ws, cuda ? 0 : fastnn::conv2d_forward_workspace(g, threads), threads);
  const float* bias = b ? b->data() : nullptr;
  float* out = y.mutable_data();
  run_on(cuda,
         [&] { fastnn::cpu_kernels().conv2d_forward(g, x.data(), w.data(), bias, relu, out, ex); },
         [&] { fastnn::cuda::host::conv2d_forward(g, x.data(), w.data(), bias, relu, out); });
  return y;
}

py::tuple conv2d_backward(const FloatArray& x, const FloatArray& w, const FloatArray& dy,
                          int64_t stride_h, int64_t stride_w, const std::string& padding,
                          const std::string& device) {
  const fastnn::Conv2dGeometry g = conv_geometry(x, w, stride_h, stride_w, padding);
  check_shape(dy, "dy", {g.n, g.oh, g.ow, g.cout}, "the shape of conv2d's output");
  FloatArray dx(shape_of(x)), dw(shape_of(w)), db(std::vector<int64_t>{g.cout});
  const int threads = fastnn::get_num_threads();
  fastnn::AlignedBuffer ws;
  const bool cuda = wants_cuda(device);
  const fastnn::Exec ex =
      exec_with(ws,
                cuda ? 0
                     : std::max(fastnn::conv2d_backward_data_workspace(g, threads),
                                fastnn::conv2d_backward_filter_workspace(g, threads)),
                threads);
  float *dx_p = dx.mutable_data(), *dw_p = dw.mutable_data(), *db_p = db.mutable_data();
  run_on(
      cuda,
      [&] {
        const fastnn::CpuKernels& k = fastnn::cpu_kernels();
        k.conv2d_backward_data(g, w.data(), dy.data(), dx_p, ex);
        k.conv2d_backward_filter(g, x.data(), dy.data(), dw_p, db_p, /*accumulate=*/false, ex);
      },
      [&] { fastnn::cuda::host::conv2d_backward(g, x.data(), w.data(), dy.data(), dx_p, dw_p, db_p); });
  return py::make_tuple(dx, dw, db);
}

// ---- dense and gemm -----------------------------------------------------------------

// One GEMM with host pointers, on the CPU (all threads) or the GPU.
void run_gemm(const fastnn::Gemm& mm, const std::string& device) {
  const int threads = fastnn::get_num_threads();
  fastnn::AlignedBuffer ws;
  const bool cuda = wants_cuda(device);
  const fastnn::Exec ex = exec_with(ws, cuda ? 0 : fastnn::gemm_workspace(threads), threads);
  run_on(cuda, [&] { fastnn::cpu_kernels().gemm(mm, ex); },
         [&] { fastnn::cuda::host::gemm(mm); });
}

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
  fastnn::Gemm mm;
  mm.m = n, mm.n = out, mm.k = in;
  mm.a = x.data(), mm.lda = in;
  mm.b = w.data(), mm.ldb = out;
  mm.c = y.mutable_data(), mm.ldc = out;
  mm.bias = b ? b->data() : nullptr, mm.relu = relu;
  run_gemm(mm, device);
  return y;
}

py::tuple dense_backward(const FloatArray& x, const FloatArray& w, const FloatArray& dy,
                         const std::string& device) {
  check_dense(x, w);
  const int64_t n = x.shape(0), in = x.shape(1), out = w.shape(1);
  check_shape(dy, "dy", {n, out}, "the shape of dense's output");
  FloatArray dx({n, in}), dw({in, out}), db(std::vector<int64_t>{out});
  fastnn::Gemm data;  // dx (n × in) = dy (n × out) · wᵀ (out × in)
  data.m = n, data.n = in, data.k = out;
  data.a = dy.data(), data.lda = out;
  data.b = w.data(), data.ldb = out, data.trans_b = true;
  data.c = dx.mutable_data(), data.ldc = in;
  fastnn::Gemm filter;  // dw (in × out) = xᵀ (in × n) · dy (n × out)
  filter.m = in, filter.n = out, filter.k = n;
  filter.a = x.data(), filter.lda = in, filter.trans_a = true;
  filter.b = dy.data(), filter.ldb = out;
  filter.c = dw.mutable_data(), filter.ldc = out;
  float* db_p = db.mutable_data();
  const int threads = fastnn::get_num_threads();
  fastnn::AlignedBuffer ws;
  const bool cuda = wants_cuda(device);
  const fastnn::Exec ex = exec_with(ws, cuda ? 0 : fastnn::gemm_workspace(threads), threads);
  run_on(
      cuda,
      [&] {
        const fastnn::CpuKernels& k = fastnn::cpu_kernels();
        k.gemm(data, ex);
        k.gemm(filter, ex);
        k.sum_rows(n, out, dy.data(), db_p, ex);
      },
      [&] {
        fastnn::cuda::host::dense_backward(n, in, out, x.data(), w.data(), dy.data(), data.c,
                                           filter.c, db_p);
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
  fastnn::Gemm mm;
  mm.m = m, mm.n = n, mm.k = k;
  mm.a = a.data(), mm.lda = a.shape(1), mm.trans_a = trans_a;
  mm.b = b.data(), mm.ldb = b.shape(1), mm.trans_b = trans_b;
  mm.c = c.mutable_data(), mm.ldc = n;
  run_gemm(mm, device);
  return c;
}

// ---- pooling ------------------------------------------------------------------------

fastnn::Pool2dGeometry pool_geometry(const py::array& x, int64_t pool_h, int64_t pool_w,
                                     int64_t stride_h, int64_t stride_w) {
  check_array(x, "x", 4, "(N, H, W, C)");
  check_positive(pool_h, "pool_size[0]");
  check_positive(pool_w, "pool_size[1]");
  check_positive(stride_h, "strides[0]");
  check_positive(stride_w, "strides[1]");
  fastnn::Pool2dGeometry g{};
  g.n = x.shape(0), g.h = x.shape(1), g.w = x.shape(2), g.c = x.shape(3);
  g.pool_h = pool_h, g.pool_w = pool_w, g.stride_h = stride_h, g.stride_w = stride_w;
  int64_t unused;
  conv_axis(g.h, pool_h, stride_h, false, "height", "pool", g.oh, unused);
  conv_axis(g.w, pool_w, stride_w, false, "width", "pool", g.ow, unused);
  if (pool_h * pool_w > std::numeric_limits<int32_t>::max()) {
    fail("pool_size (", pool_h, ", ", pool_w, ") has more than 2**31 - 1 elements per window");
  }
  return g;
}

FloatArray maxpool2d(const FloatArray& x, int64_t pool_h, int64_t pool_w, int64_t stride_h,
                     int64_t stride_w, const std::string& device) {
  const fastnn::Pool2dGeometry g = pool_geometry(x, pool_h, pool_w, stride_h, stride_w);
  FloatArray y({g.n, g.oh, g.ow, g.c});
  float* out = y.mutable_data();
  run_on(
      wants_cuda(device),
      [&] {
        std::vector<int32_t> argmax(g.n * g.oh * g.ow * g.c);
        fastnn::cpu_kernels().maxpool2d_forward(g, x.data(), out, argmax.data(),
                                                {fastnn::get_num_threads(), nullptr});
      },
      [&] { fastnn::cuda::host::maxpool2d_forward(g, x.data(), out); });
  return y;
}

FloatArray maxpool2d_backward(const FloatArray& x, const FloatArray& dy, int64_t pool_h,
                              int64_t pool_w, int64_t stride_h, int64_t stride_w,
                              const std::string& device) {
  const fastnn::Pool2dGeometry g = pool_geometry(x, pool_h, pool_w, stride_h, stride_w);
  check_shape(dy, "dy", {g.n, g.oh, g.ow, g.c}, "the shape of maxpool2d's output");
  FloatArray dx(shape_of(x));
  float* dx_p = dx.mutable_data();
  run_on(
      wants_cuda(device),
      [&] {
        std::vector<float> y(g.n * g.oh * g.ow * g.c);
        std::vector<int32_t> argmax(y.size());
        const fastnn::CpuKernels& k = fastnn::cpu_kernels();
        const fastnn::Exec ex{fastnn::get_num_threads(), nullptr};
        k.maxpool2d_forward(g, x.data(), y.data(), argmax.data(), ex);
        k.maxpool2d_backward(g, dy.data(), argmax.data(), nullptr, dx_p, ex);
      },
      [&] { fastnn::cuda::host::maxpool2d_backward(g, x.data(), dy.data(), dx_p); });
  return dx;
}

// ---- relu, softmax cross-entropy, adam ----------------------------------------------

void check_nonempty_any(const py::array& a, const char* name) {
  if (a.size() == 0) fail(name, " must not be empty, got shape ", shape_str(shape_of(a)));
}

FloatArray relu(const FloatArray& x, const std::string& device) {
  check_nonempty_any(x, "x");
  FloatArray y(shape_of(x));
  float* out = y.mutable_data();
  run_on(
      wants_cuda(device),
      [&] {
        fastnn::cpu_kernels().relu_forward(x.size(), x.data(), out,
                                           {fastnn::get_num_threads(), nullptr});
      },
      [&] { fastnn::cuda::host::relu_forward(x.size(), x.data(), out); });
  return y;
}

FloatArray relu_backward(const FloatArray& x, const FloatArray& dy, const std::string& device) {
  check_nonempty_any(x, "x");
  check_shape(dy, "dy", shape_of(x), "the shape of x");
  FloatArray dx(shape_of(x));
  float* out = dx.mutable_data();
  run_on(
      wants_cuda(device),
      [&] {
        fastnn::cpu_kernels().relu_backward(x.size(), x.data(), dy.data(), out,
                                            {fastnn::get_num_threads(), nullptr});
      },
      [&] { fastnn::cuda::host::relu_backward(x.size(), x.data(), dy.data(), out); });
  return dx;
}

py::tuple softmax_cross_entropy(const FloatArray& logits, const LabelArray& labels,
                                const std::string& device) {
  check_array(logits, "logits", 2, "(N, classes)");
  const int64_t n = logits.shape(0), classes = logits.shape(1);
  if (labels.ndim() != 1 || labels.shape(0) != n) {
    fail("labels must have shape (", n, ",) (one integer class per row of logits), got ",
         shape_str(shape_of(labels)));
  }
  std::vector<int32_t> labels32(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = labels.data()[i];
    if (label < 0 || label >= classes) {
      fail("labels[", i, "] = ", label, " is out of range: expected 0 <= label < ", classes,
           " (the number of columns of logits)");
    }
    labels32[i] = static_cast<int32_t>(label);
  }
  for (int64_t i = 0; i < logits.size(); ++i) {
    if (!std::isfinite(logits.data()[i])) {
      fail("logits must be finite, got ", logits.data()[i], " at flat index ", i);
    }
  }
  FloatArray dlogits({n, classes});
  fastnn::AlignedBuffer ws;
  const int threads = fastnn::get_num_threads();
  const fastnn::Exec ex = exec_with(ws, fastnn::softmax_cross_entropy_workspace(n), threads);
  float* d = dlogits.mutable_data();
  double loss = 0.0;
  run_on(
      wants_cuda(device),
      [&] {
        loss = fastnn::cpu_kernels().softmax_cross_entropy(n, classes, logits.data(),
                                                           labels32.data(), d, ex);
      },
      [&] {
        loss = fastnn::cuda::host::softmax_cross_entropy(n, classes, logits.data(),
                                                         labels32.data(), d);
      });
  return py::make_tuple(loss, dlogits);
}

void adam_update(const py::array& param_in, const FloatArray& grad, const py::array& m_in,
                 const py::array& v_in, int64_t step, double lr, double beta_1, double beta_2,
                 double epsilon, const std::string& device) {
  py::array_t<float> param = in_place(param_in, "param");
  py::array_t<float> m = in_place(m_in, "m"), v = in_place(v_in, "v");
  check_nonempty_any(param, "param");
  check_shape(grad, "grad", shape_of(param), "the shape of param");
  check_shape(m, "m", shape_of(param), "the shape of param");
  check_shape(v, "v", shape_of(param), "the shape of param");
  if (step < 1) fail("step must be >= 1 (Adam counts steps from 1), got ", step);
  if (!std::isfinite(lr)) fail("lr must be finite, got ", lr);
  if (!(beta_1 >= 0.0 && beta_1 < 1.0)) fail("beta_1 must be in [0, 1), got ", beta_1);
  if (!(beta_2 >= 0.0 && beta_2 < 1.0)) fail("beta_2 must be in [0, 1), got ", beta_2);
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon)) fail("epsilon must be >= 0 and finite, got ", epsilon);
  const double alpha = lr * std::sqrt(1.0 - std::pow(beta_2, static_cast<double>(step))) /
                       (1.0 - std::pow(beta_1, static_cast<double>(step)));
  const fastnn::AdamStep s{static_cast<float>(alpha), static_cast<float>(1.0 - beta_1),
                           static_cast<float>(1.0 - beta_2), static_cast<float>(epsilon)};
  float *p = param.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
  run_on(
      wants_cuda(device),
      [&] {
        fastnn::cpu_kernels().adam_update(param.size(), p, grad.data(), mp, vp, s,
                                          {fastnn::get_num_threads(), nullptr});
      },
      [&] { fastnn::cuda::host::adam_update(param.size(), p, grad.data(), mp, vp, s); });
}


// ---- the engine ---------------------------------------------------------------------

// dict[key] as T, or an error naming the layer and the key.
template <class T>
T field(const py::dict& d, const char* key, const std::string& where) {
  if (!d.contains(key)) fail(where, " is missing '", key, "'");
  try {
    return d[key].cast<T>();
  } catch (const py::cast_error&) {
    fail(where, ": '", key, "' has the wrong type (", std::string(py::str(py::type::of(d[key]))), ")");
  }
}

std::pair<int64_t, int64_t> field_pair(const py::dict& d, const char* key, const std::string& where) {
  const auto pair = field<std::vector<int64_t>>(d, key, where);
  if (pair.size() != 2) fail(where, ": '", key, "' must be a pair, got ", pair.size(), " values");
  return {pair[0], pair[1]};
}

fastnn::Activation parse_activation(const py::dict& d, const std::string& where) {
  const std::string name = d.contains("activation") ? field<std::string>(d, "activation", where) : "linear";
  if (name == "linear") return fastnn::Activation::Linear;
  if (name == "relu") return fastnn::Activation::Relu;
  if (name == "softmax") return fastnn::Activation::Softmax;
  fail(where, ": unknown activation '", name, "' (expected 'linear', 'relu' or 'softmax')");
}

fastnn::LayerSpec parse_layer(const py::dict& d, size_t index) {
  using Kind = fastnn::LayerSpec::Kind;
  const std::string where = "layer " + std::to_string(index);
  const std::string type = field<std::string>(d, "type", where);
  fastnn::LayerSpec spec{};
  if (type == "conv2d") {
    spec.kind = Kind::Conv2d;
    spec.units = field<int64_t>(d, "filters", where);
    std::tie(spec.kh, spec.kw) = field_pair(d, "kernel_size", where);
    std::tie(spec.sh, spec.sw) = field_pair(d, "strides", where);
    spec.same = parse_padding(field<std::string>(d, "padding", where));
    spec.activation = parse_activation(d, where);
    spec.use_bias = field<bool>(d, "use_bias", where);
  } else if (type == "maxpool2d") {
    spec.kind = Kind::MaxPool2d;
    std::tie(spec.kh, spec.kw) = field_pair(d, "pool_size", where);
    std::tie(spec.sh, spec.sw) = field_pair(d, "strides", where);
  } else if (type == "flatten") {
    spec.kind = Kind::Flatten;
  } else if (type == "dense") {
    spec.kind = Kind::Dense;
    spec.units = field<int64_t>(d, "units", where);
    spec.activation = parse_activation(d, where);
    spec.use_bias = field<bool>(d, "use_bias", where);
  } else if (type == "dropout") {
    spec.kind = Kind::Dropout;
    spec.rate = field<double>(d, "rate", where);
  } else {
    fail(where, ": unknown type '", type, "' (expected conv2d, maxpool2d, flatten, dense or dropout)");
  }
  return spec;
}

fastnn::OptimizerSpec parse_optimizer(const py::dict& d) {
  fastnn::OptimizerSpec spec;
  const std::string type = field<std::string>(d, "type", "optimizer");
  spec.learning_rate = field<double>(d, "learning_rate", "optimizer");
  if (type == "adam") {
    spec.kind = fastnn::OptimizerSpec::Kind::Adam;
    spec.beta_1 = field<double>(d, "beta_1", "optimizer");
    spec.beta_2 = field<double>(d, "beta_2", "optimizer");
    spec.epsilon = field<double>(d, "epsilon", "optimizer");
  } else if (type == "sgd") {
    spec.kind = fastnn::OptimizerSpec::Kind::Sgd;
    spec.momentum = field<double>(d, "momentum", "optimizer");
    spec.nesterov = field<bool>(d, "nesterov", "optimizer");
  } else {
    fail("optimizer: unknown type '", type, "' (expected 'adam' or 'sgd')");
  }
  return spec;
}

template <class Engine>
std::unique_ptr<Engine> make_engine(const py::list& layers, const std::vector<int64_t>& input_shape,
                                    const py::dict& optimizer) {
  std::vector<fastnn::LayerSpec> specs;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!py::isinstance<py::dict>(layers[i])) fail("layer ", i, " must be a dict");
    specs.push_back(parse_layer(layers[i].cast<py::dict>(), i));
  }
  return std::make_unique<Engine>(std::move(specs), input_shape, parse_optimizer(optimizer));
}

// A batch for the net: x (n, *input_shape) and, when given, labels (n,) in range.
template <class Engine>
int64_t check_batch(Engine& net, const FloatArray& x, const std::optional<LabelArray>& labels,
                    std::vector<int32_t>& labels32) {
  std::vector<int64_t> expected{x.ndim() > 0 ? x.shape(0) : 0};
  for (int64_t d : net.input_shape()) expected.push_back(d);
  if (x.ndim() == 0 || shape_of(x) != expected) {
    std::vector<int64_t> per_sample(net.input_shape());
    fail("x must have shape (N, ", shape_str(per_sample).substr(1), " (the model's input shape ",
         shape_str(per_sample), " with a batch axis), got ", shape_str(shape_of(x)));
  }
  const int64_t n = x.shape(0);
  if (n == 0) fail("x must not be empty: the batch has 0 samples");
  if (!labels) return n;
  if (labels->ndim() != 1 || labels->shape(0) != n) {
    fail("labels must have shape (", n, ",) (one class index per sample), got ",
         shape_str(shape_of(*labels)));
  }
  labels32.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = labels->data()[i];
    if (label < 0 || label >= net.classes()) {
      fail("labels[", i, "] = ", label, " is out of range: the model has ", net.classes(),
           " outputs, so labels must be in [0, ", net.classes(), ")");
    }
    labels32[i] = static_cast<int32_t>(label);
  }
  return n;
}

// Checks a labelled batch, then runs `step` (train_step or evaluate) without the GIL.
template <class Engine>
std::pair<double, int64_t> run_batch(
    Engine& net, const FloatArray& x, const LabelArray& labels,
    fastnn::BatchResult (Engine::*step)(const float*, const int32_t*, int64_t)) {
  std::vector<int32_t> labels32;
  const int64_t n = check_batch(net, x, labels, labels32);
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> lock(net.mutex);
  const fastnn::BatchResult r = (net.*step)(x.data(), labels32.data(), n);
  return {r.loss, r.correct};
}

// Arrays that view the net's own memory (on the host); they keep the net alive.
template <class Engine>
py::list views(py::object owner, Engine& net, float* base) {
  py::list out;
  for (const fastnn::ParameterSlot& slot : net.parameter_slots()) {
    out.append(py::array_t<float>(slot.shape, base + slot.offset, owner));
  }
  return out;
}

// ---- datasets: what a whole epoch reads ---------------------------------------------

// The CPU engine reads the caller's samples in place: this keeps them alive.
struct HostData {
  FloatArray x;
  std::vector<int32_t> labels;
  bool labelled;
  int64_t count;
  fastnn::HostDataset view() const {
    return {x.data(), labelled ? labels.data() : nullptr, count};
  }
};

template <class Engine>
struct EngineTraits;

template <>
struct EngineTraits<fastnn::Net> {
  using Data = std::shared_ptr<HostData>;
  static constexpr const char* device = "cpu";
  static Data dataset(fastnn::Net&, FloatArray x, std::vector<int32_t> labels, bool has_labels,
                      int64_t n) {
    return std::make_shared<HostData>(HostData{std::move(x), std::move(labels), has_labels, n});
  }
  static fastnn::HostDataset unwrap(const Data& data) { return data->view(); }
  static int64_t count(const Data& data) { return data->count; }
  static bool labelled(const Data& data) { return data->labelled; }
  static void pull(fastnn::Net&) {}  // the views are the engine's memory
  static void push(fastnn::Net&) {}
};

#ifdef FASTNN_WITH_CUDA
template <>
struct EngineTraits<fastnn::CudaNet> {
  using Data = std::shared_ptr<fastnn::CudaDataset>;
  static constexpr const char* device = "cuda";
  static Data dataset(fastnn::CudaNet& net, const FloatArray& x, const std::vector<int32_t>& labels,
                      bool has_labels, int64_t n) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(net.mutex);
    return net.dataset(x.data(), has_labels ? labels.data() : nullptr, n);
  }
  static const Data& unwrap(const Data& data) { return data; }
  static int64_t count(const Data& data) { return data->count(); }
  static bool labelled(const Data& data) { return data->has_labels(); }
  static void pull(fastnn::CudaNet& net) { net.pull(); }
  static void push(fastnn::CudaNet& net) { net.push(); }
};
#endif

// The steps [first, first + count) of an epoch of `batch_size` over `data`, checked.
template <class Engine>
void check_steps(const typename EngineTraits<Engine>::Data& data, int64_t batch_size,
                 int64_t first, int64_t count, bool need_labels) {
  using Traits = EngineTraits<Engine>;
  if (batch_size < 1) fail("batch_size must be >= 1, got ", batch_size);
  const int64_t steps = fastnn::epoch_steps(Traits::count(data), batch_size);
  if (first < 0 || count < 1 || first + count > steps) {
    fail("steps [", first, ", ", first + count, ") are outside the epoch: ",
         Traits::count(data), " samples in batches of ", batch_size, " make ", steps, " steps");
  }
  if (need_labels && !Traits::labelled(data)) fail("this dataset has no labels");
}

// What only one engine has: the CPU's timings, each engine's way to take a dropout seed.
void bind_device_specifics(py::class_<fastnn::Net>& cls);
#ifdef FASTNN_WITH_CUDA
void bind_device_specifics(py::class_<fastnn::CudaNet>& cls);
#endif

template <class Engine>
void bind_engine(py::module_& m, const char* name, const char* doc) {
  using Traits = EngineTraits<Engine>;
  using Data = typename Traits::Data;
  py::class_<Engine> cls(m, name, doc);
  cls.def(py::init(&make_engine<Engine>), py::arg("layers"), py::arg("input_shape"),
          py::arg("optimizer"))
      .def_property_readonly("device", [](const Engine&) { return Traits::device; })
      .def("parameters", [](py::object self) {
        Engine& net = self.cast<Engine&>();
        return views(self, net, net.parameters());
      })
      .def("optimizer_state", [](py::object self) {
        Engine& net = self.cast<Engine&>();
        py::list out;
        for (int s = 0; s < net.optimizer_slot_count(); ++s) {
          for (py::handle a : views(self, net, net.optimizer_state(s))) out.append(a);
        }
        return out;
      })
      .def("pull", [](Engine& net) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(net.mutex);
        Traits::pull(net);
      }, "Refresh the host copy that parameters() and optimizer_state() view (CUDA)")
      .def("push", [](Engine& net) {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(net.mutex);
        Traits::push(net);
      }, "Send the host copy to the device after writing into the views (CUDA)")
      .def_readwrite("iterations", &Engine::iterations)
      .def_readwrite("learning_rate", &Engine::learning_rate)
      .def("output_shapes", [](const Engine& net) {
        py::list out;
        for (const auto& shape : net.output_shapes()) out.append(py::tuple(py::cast(shape)));
        return out;
      })
      .def_property_readonly("parameter_count", &Engine::parameter_count)
      .def("train_step", [](Engine& net, const FloatArray& x, const LabelArray& labels) {
        return run_batch(net, x, labels, &Engine::train_step);
      }, py::arg("x"), py::arg("labels"))
      .def("evaluate", [](Engine& net, const FloatArray& x, const LabelArray& labels) {
        return run_batch(net, x, labels, &Engine::evaluate);
      }, py::arg("x"), py::arg("labels"))
      .def("predict", [](Engine& net, const FloatArray& x) {
        std::vector<int32_t> unused;
        const int64_t n = check_batch(net, x, std::nullopt, unused);
        FloatArray out({n, net.classes()});
        float* p = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.predict(x.data(), n, p);
        }
        return out;
      }, py::arg("x"))
      .def("dataset", [](Engine& net, const FloatArray& x, const std::optional<LabelArray>& labels) {
        std::vector<int32_t> labels32;
        const int64_t n = check_batch(net, x, labels, labels32);
        return Traits::dataset(net, x, std::move(labels32), labels.has_value(), n);
      }, py::arg("x"), py::arg("labels") = py::none(),
         "The samples (and labels) a run of steps reads: on the GPU, copied there once")
      .def("train_steps", [](Engine& net, const Data& data, int64_t batch_size,
                             std::optional<uint64_t> shuffle_key, int64_t first, int64_t count) {
        check_steps<Engine>(data, batch_size, first, count, true);
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(net.mutex);
        net.train_steps(Traits::unwrap(data), batch_size, shuffle_key.has_value(),
                        shuffle_key.value_or(0), first, count);
      }, py::arg("data"), py::arg("batch_size"), py::arg("shuffle_key"), py::arg("first_step"),
         py::arg("count"),
         "Run (CPU) or enqueue (CUDA) steps [first_step, first_step + count) of an epoch")
      .def("step_results", [](Engine& net, int64_t first, int64_t count) {
        if (first < 0 || count < 1) fail("step_results: first >= 0 and count >= 1, got ", first, ", ", count);
        py::array_t<float> loss(count);
        py::array_t<int32_t> correct(count);
        float* l = loss.mutable_data();
        int32_t* c = correct.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.step_results(first, count, l, c);
        }
        return py::make_tuple(loss, correct);
      }, py::arg("first_step"), py::arg("count"),
         "(mean loss, correct count) of each of those steps, once they are done")
      .def("evaluate_steps", [](Engine& net, const Data& data, int64_t batch_size, int64_t first,
                                int64_t count) {
        check_steps<Engine>(data, batch_size, first, count, true);
        py::array_t<double> loss(count);
        py::array_t<int32_t> correct(count);
        double* l = loss.mutable_data();
        int32_t* c = correct.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.evaluate_steps(Traits::unwrap(data), batch_size, first, count, l, c);
        }
        return py::make_tuple(loss, correct);
      }, py::arg("data"), py::arg("batch_size"), py::arg("first_step"), py::arg("count"),
         "(summed loss, correct count) of each batch, in order, without training")
      .def("predict_steps", [](Engine& net, const Data& data, int64_t batch_size, int64_t first,
                               int64_t count) {
        check_steps<Engine>(data, batch_size, first, count, false);
        const int64_t rows = std::min(Traits::count(data), (first + count) * batch_size) -
                             first * batch_size;
        FloatArray out({rows, net.classes()});
        float* p = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          std::lock_guard<std::mutex> lock(net.mutex);
          net.predict_steps(Traits::unwrap(data), batch_size, first, count, p);
        }
        return out;
      }, py::arg("data"), py::arg("batch_size"), py::arg("first_step"), py::arg("count"),
         "The outputs of those batches' rows, in order");
  bind_device_specifics(cls);
}

void bind_device_specifics(py::class_<fastnn::Net>& cls) {
  using fastnn::Net;
  cls.def("seed", [](Net& net, uint64_t seed) { net.seed = seed; }, py::arg("seed"))
      .def("timings", [](const Net& net) {
        const Net::Timings& t = net.timings();
        py::dict d;
        d["forward"] = t.forward;
        d["backward"] = t.backward;
        d["loss"] = t.loss;
        d["update"] = t.update;
        d["steps"] = t.steps;
        return d;
      }, "Wall seconds per layer (forward, backward lists), loss and update, and the "
         "number of training steps, since the last reset_timings()")
      .def("reset_timings", &Net::reset_timings);
}

#ifdef FASTNN_WITH_CUDA
void bind_device_specifics(py::class_<fastnn::CudaNet>& cls) {
  using fastnn::CudaNet;
  cls.def("seed", [](CudaNet& net, uint64_t seed) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(net.mutex);
    net.set_seed(seed);
  }, py::arg("seed"));
}
#endif

void bind_net(py::module_& m) {
  py::class_<HostData, std::shared_ptr<HostData>>(m, "HostDataset",
                                                  "Samples the CPU engine reads in place")
      .def("__len__", [](const HostData& d) { return d.count; });
  bind_engine<fastnn::Net>(m, "Net", "The compiled training plan on the CPU (csrc/engine/CONTRACT.md)");
#ifdef FASTNN_WITH_CUDA
  py::class_<fastnn::CudaDataset, std::shared_ptr<fastnn::CudaDataset>>(
      m, "CudaDataset", "Samples copied to the GPU once")
      .def("__len__", &fastnn::CudaDataset::count);
  bind_engine<fastnn::CudaNet>(m, "CudaNet",
                               "The compiled training plan on the GPU (csrc/engine/CONTRACT.md)");
#endif
}

// ---- build information --------------------------------------------------------------

py::dict build_info() {
  py::dict info;
  info["version"] = FASTNN_VERSION;
  info["cpu_isa_available"] = fastnn::cpu_isa_available();
  info["cpu_isa"] = std::string(fastnn::cpu_kernels().isa);
  info["num_threads"] = fastnn::get_num_threads();
  info["max_threads"] = fastnn::max_threads();
#ifdef FASTNN_WITH_CUDA
  info["cuda_compiled"] = true;
  info["cuda_runtime_version"] = fastnn::cuda::runtime_version();
  const int devices = fastnn::cuda::device_count();
  info["cuda_devices"] = devices;
  py::list names;
  for (int i = 0; i < devices; ++i) names.append(fastnn::cuda::device_name(i));
  info["cuda_device_names"] = names;
#else
  info["cuda_compiled"] = false;
  info["cuda_devices"] = 0;
#endif
  info["compiler"] = __VERSION__;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastnn's compiled kernels; use fastnn.ops for the checked NumPy API";
  m.attr("__version__") = FASTNN_VERSION;
  fastnn::init_cpu_isa_from_env();

  m.def("build_info", &build_info);
  m.def("get_num_threads", &fastnn::get_num_threads);
  m.def("set_num_threads", &fastnn::set_num_threads, py::arg("n"));
  m.def("get_cpu_isa", [] { return std::string(fastnn::cpu_kernels().isa); });
  m.def("set_cpu_isa", &fastnn::set_cpu_isa, py::arg("name"));

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
        py::arg("stride_h"), py::arg("stride_w"), py::arg("device") = "cpu");
  m.def("maxpool2d_backward", &maxpool2d_backward, py::arg("x"), py::arg("dy"),
        py::arg("pool_h"), py::arg("pool_w"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("device") = "cpu");
  m.def("relu", &relu, py::arg("x"), py::arg("device") = "cpu");
  m.def("relu_backward", &relu_backward, py::arg("x"), py::arg("dy"), py::arg("device") = "cpu");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("device") = "cpu");
  bind_net(m);
  m.def("shuffle_order", [](uint64_t key, int64_t n) {
    if (n < 1) fail("n must be >= 1, got ", n);
    py::array_t<int64_t> order(n);
    int64_t* o = order.mutable_data();
    for (int64_t i = 0; i < n; ++i) {
      o[i] = static_cast<int64_t>(fastnn::shuffle_index(key, i, static_cast<uint64_t>(n)));
    }
    return order;
  }, py::arg("key"), py::arg("n"), "The epoch's sample order for a shuffle key (ops.h shuffle_index)");
  m.def("adam_update", &adam_update, py::arg("param"), py::arg("grad"), py::arg("m"),
        py::arg("v"), py::arg("step"), py::arg("lr"), py::arg("beta_1"), py::arg("beta_2"),
        py::arg("epsilon"), py::arg("device") = "cpu");
}
