// ops_host.cu — fastnn.ops(device='cuda'): upload the inputs, launch the kernels of
// kernels.h on one stream, download the outputs, synchronise. Device memory is owned by
// DeviceBuffer and every CUDA call is checked (check.h), so a failure surfaces as a Python
// exception naming the call and leaks nothing.
#include "cuda/ops_host.h"

#include <vector>

#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/kernels.h"

namespace fastnn::cuda::host {
namespace {

// A stream for one op call, synchronised and destroyed on the way out.
class Stream {
 public:
  Stream() { check(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { cudaStreamDestroy(stream_); }
  operator cudaStream_t() const { return stream_; }
  void sync() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_ = nullptr;
};

template <class T>
DeviceBuffer<T> upload(const T* host, int64_t count, const Stream& stream) {
  DeviceBuffer<T> buffer(count);
  if (count > 0) buffer.upload(host, stream);
  return buffer;
}

}  // namespace

void require_device() {
  if (device_count() == 0) {
    throw CudaError(
        "device='cuda' needs a CUDA GPU, and this process sees none (cudaGetDeviceCount "
        "found no device: no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it); use "
        "device='cpu'");
  }
}

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                    bool relu, float* y) {
  require_device();
  Stream stream;
  auto dx = upload(x, g.n * g.h * g.w * g.cin, stream);
  auto dw = upload(w, g.patch() * g.cout, stream);
  DeviceBuffer<float> db;
  if (bias) db = upload(bias, g.cout, stream);
  DeviceBuffer<float> dy(g.n * g.oh * g.ow * g.cout);
  cuda::conv2d_forward(g, dx.data(), dw.data(), bias ? db.data() : nullptr, relu, dy.data(),
                       stream);
  dy.download(y, stream);
  stream.sync();
}

void conv2d_backward(const Conv2dGeometry& g, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db) {
  require_device();
  Stream stream;
  auto x_dev = upload(x, g.n * g.h * g.w * g.cin, stream);
  auto w_dev = upload(w, g.patch() * g.cout, stream);
  auto dy_dev = upload(dy, g.n * g.oh * g.ow * g.cout, stream);
  DeviceBuffer<float> dx_dev(g.n * g.h * g.w * g.cin), dw_dev(g.patch() * g.cout),
      db_dev(g.cout), workspace(conv2d_filter_workspace_floats(g));
  cuda::conv2d_backward_data(g, w_dev.data(), dy_dev.data(), dx_dev.data(), stream);
  cuda::conv2d_backward_filter(g, x_dev.data(), dy_dev.data(), dw_dev.data(), db_dev.data(),
                               workspace.data(), stream);
  dx_dev.download(dx, stream);
  dw_dev.download(dw, stream);
  db_dev.download(db, stream);
  stream.sync();
}

void gemm(const Gemm& g) {
  require_device();
  Stream stream;
  // Stored shapes: A is m×k (k×m when transposed) with row stride lda; B likewise.
  const int64_t a_rows = g.trans_a ? g.k : g.m, b_rows = g.trans_b ? g.n : g.k;
  auto a = upload(g.a, a_rows * g.lda, stream);
  auto b = upload(g.b, b_rows * g.ldb, stream);
  DeviceBuffer<float> bias;
  if (g.bias) bias = upload(g.bias, g.n, stream);
  DeviceBuffer<float> c = g.accumulate ? upload(g.c, g.m * g.ldc, stream)
                                       : DeviceBuffer<float>(g.m * g.ldc);
  Gemm on_device = g;
  on_device.a = a.data(), on_device.b = b.data(), on_device.c = c.data();
  on_device.bias = g.bias ? bias.data() : nullptr;
  cuda::gemm(on_device, stream);
  c.download(g.c, stream);
  stream.sync();
}

void dense_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* w,
                    const float* dy, float* dx, float* dw, float* db) {
  require_device();
  Stream stream;
  auto x_dev = upload(x, n * in, stream);
  auto w_dev = upload(w, in * out, stream);
  auto dy_dev = upload(dy, n * out, stream);
  DeviceBuffer<float> dx_dev(n * in), dw_dev(in * out), db_dev(out);
  Gemm data;  // dx (n × in) = dy (n × out) · wᵀ (out × in)
  data.m = n, data.n = in, data.k = out;
  data.a = dy_dev.data(), data.lda = out;
  data.b = w_dev.data(), data.ldb = out, data.trans_b = true;
  data.c = dx_dev.data(), data.ldc = in;
  Gemm filter;  // dw (in × out) = xᵀ (in × n) · dy (n × out)
  filter.m = in, filter.n = out, filter.k = n;
  filter.a = x_dev.data(), filter.lda = in, filter.trans_a = true;
  filter.b = dy_dev.data(), filter.ldb = out;
  filter.c = dw_dev.data(), filter.ldc = out;
  cuda::gemm(data, stream);
  cuda::gemm(filter, stream);
  cuda::sum_rows(n, out, dy_dev.data(), db_dev.data(), stream);
  dx_dev.download(dx, stream);
  dw_dev.download(dw, stream);
  db_dev.download(db, stream);
  stream.sync();
}

void maxpool2d_forward(const Pool2dGeometry& g, const float* x, float* y) {
  require_device();
  Stream stream;
  const int64_t outputs = g.n * g.oh * g.ow * g.c;
  auto x_dev = upload(x, g.n * g.h * g.w * g.c, stream);
  DeviceBuffer<float> y_dev(outputs);
  DeviceBuffer<int32_t> argmax(outputs);
  cuda::maxpool2d_forward(g, x_dev.data(), y_dev.data(), argmax.data(), stream);
  y_dev.download(y, stream);
  stream.sync();
}

void maxpool2d_backward(const Pool2dGeometry& g, const float* x, const float* dy, float* dx) {
  require_device();
  Stream stream;
  const int64_t inputs = g.n * g.h * g.w * g.c, outputs = g.n * g.oh * g.ow * g.c;
  auto x_dev = upload(x, inputs, stream);
  auto dy_dev = upload(dy, outputs, stream);
  DeviceBuffer<float> y_dev(outputs), dx_dev(inputs);
  DeviceBuffer<int32_t> argmax(outputs);
  cuda::maxpool2d_forward(g, x_dev.data(), y_dev.data(), argmax.data(), stream);
  cuda::maxpool2d_backward(g, dy_dev.data(), argmax.data(), nullptr, dx_dev.data(), stream);
  dx_dev.download(dx, stream);
  stream.sync();
}

void relu_forward(int64_t count, const float* x, float* y) {
  require_device();
  Stream stream;
  auto x_dev = upload(x, count, stream);
  DeviceBuffer<float> y_dev(count);
  cuda::relu_forward(count, x_dev.data(), y_dev.data(), stream);
  y_dev.download(y, stream);
  stream.sync();
}

void relu_backward(int64_t count, const float* x, const float* dy, float* dx) {
  require_device();
  Stream stream;
  auto x_dev = upload(x, count, stream);
  auto dy_dev = upload(dy, count, stream);
  DeviceBuffer<float> dx_dev(count);
  cuda::relu_backward(count, x_dev.data(), dy_dev.data(), dx_dev.data(), stream);
  dx_dev.download(dx, stream);
  stream.sync();
}

double softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                             const int32_t* labels, float* dlogits) {
  require_device();
  Stream stream;
  auto logits_dev = upload(logits, n * classes, stream);
  auto labels_dev = upload(labels, n, stream);
  DeviceBuffer<float> dlogits_dev(n * classes), loss(1), workspace(n);
  cuda::softmax_cross_entropy(n, classes, logits_dev.data(), labels_dev.data(),
                              dlogits_dev.data(), loss.data(), workspace.data(), stream);
  float loss_host = 0.0f;
  loss.download(&loss_host, stream);
  dlogits_dev.download(dlogits, stream);
  stream.sync();
  return loss_host;
}

void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step) {
  require_device();
  Stream stream;
  auto param_dev = upload(param, count, stream);
  auto grad_dev = upload(grad, count, stream);
  auto m_dev = upload(m, count, stream);
  auto v_dev = upload(v, count, stream);
  cuda::adam_update(count, param_dev.data(), grad_dev.data(), m_dev.data(), v_dev.data(), step,
                    stream);
  param_dev.download(param, stream);
  m_dev.download(m, stream);
  v_dev.download(v, stream);
  stream.sync();
}

}  // namespace fastnn::cuda::host
