// activation.cu — ReLU and its gradient, dropout with the CPU's coins, every other ops.h
// activation kind forward and backward in the CPU code's forms (cpu/activation.cpp) with
// CUDA's expf, tanhf, erfcf, and the softmax's gradient (one warp per row). Element-wise
// kernels are one grid-stride pass each (memory-bound; a warp reads 32 consecutive floats,
// so loads coalesce). Any may run in place (y == x, dx == dy, as the CPU engine calls
// relu_backward), so the pointers are not __restrict__.
#include <algorithm>
#include <cmath>

#include "cuda/check.h"
#include "cuda/grid.cuh"
#include "cuda/kernels.h"

namespace fastnn::cuda {
namespace {

__global__ void relu_forward_kernel(int64_t count, const float* x, float* y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

// Zero gradient at x == 0, as TensorFlow and PyTorch define it.
__global__ void relu_backward_kernel(int64_t count, const float* x, const float* dy,
                                     float* dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
  }
}

// The CPU's coin for element i (cpu/activation.cpp): scale when kept, else 0.
__device__ float dropout_factor(uint64_t stream, int64_t i, uint32_t threshold, float scale) {
  const bool keep = (splitmix64(stream + static_cast<uint64_t>(i)) >> 40) >= threshold;
  return keep ? scale : 0.0f;
}

// fastnn.ops' dropout: y = x · factor, and the factor itself into mask.
__global__ void dropout_forward_kernel(int64_t count, const float* x, float* y, float* mask,
                                       DropoutStep step) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float factor = dropout_factor(step.stream, i, step.threshold, step.scale);
    mask[i] = factor;
    y[i] = x[i] * factor;
  }
}

// The engine's: y = x · factor (forward) or dx = dy · factor (backward), the same pass
// either way, the stream formed from the iteration in TrainState.
__global__ void dropout_resident_kernel(int64_t count, const float* in, float* out,
                                        uint32_t threshold, float scale, uint64_t layer_stream,
                                        const TrainState* __restrict__ state) {
  const uint64_t stream = splitmix64(layer_stream + static_cast<uint64_t>(state->iteration));
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    out[i] = in[i] * dropout_factor(stream, i, threshold, scale);
  }
}

}  // namespace

void dropout_forward_resident(int64_t count, const float* x, float* y, uint32_t threshold,
                              float scale, uint64_t layer_stream, const TrainState* state,
                              cudaStream_t stream) {
  if (count <= 0) return;
  dropout_resident_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, x, y, threshold, scale, layer_stream, state);
  check_launch("dropout_resident_kernel (forward)");
}

void dropout_backward_resident(int64_t count, const float* dy, float* dx, uint32_t threshold,
                               float scale, uint64_t layer_stream, const TrainState* state,
                               cudaStream_t stream) {
  if (count <= 0) return;
  dropout_resident_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(
      count, dy, dx, threshold, scale, layer_stream, state);
  check_launch("dropout_resident_kernel (backward)");
}

void dropout_forward(int64_t count, const float* x, float* y, float* mask,
                     const DropoutStep& step, const Exec& ex) {
  if (count <= 0) return;
  dropout_forward_kernel<<<grid_blocks(count), kGridThreads, 0, stream_of(ex)>>>(count, x, y,
                                                                                mask, step);
  check_launch("dropout_forward_kernel");
}

void relu_forward(int64_t count, const float* x, float* y, const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (count <= 0) return;
  relu_forward_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, x, y);
  check_launch("relu_forward_kernel");
}

void relu_backward(int64_t count, const float* x, const float* dy, float* dx,
                   const Exec& ex) {
  const cudaStream_t stream = stream_of(ex);
  if (count <= 0) return;
  relu_backward_kernel<<<grid_blocks(count), kGridThreads, 0, stream>>>(count, x, dy, dx);
  check_launch("relu_backward_kernel");
}

// ---- the other activation kinds (ops.h Act), and the softmax's gradient -----------------

namespace {

constexpr float kSeluScale = 1.05070098735548049342f;  // Keras's selu constants
constexpr float kSeluAlpha = 1.67326324235437728482f;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;   // the normal density at 0
constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // GeluTanh's sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;
constexpr float kMishLinear = 20.0f;  // past it Mish is x to float precision (see the CPU's)

// sigmoid(z) and 1 − sigmoid(z), each from e^−|z| <= 1, so neither cancels nor overflows.
struct Logistic {
  float p, q;
};
__device__ Logistic logistic(float z) {
  const float e = expf(-fabsf(z));
  const float r = 1.0f / (1.0f + e);
  Logistic s;
  s.p = z >= 0.0f ? r : e * r;
  s.q = z >= 0.0f ? e * r : r;
  return s;
}

__device__ float hard_sigmoid(float x) { return fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f; }
__device__ float gelu_tanh_u(float x) { return kSqrt2OverPi * (x + kGeluCubic * x * x * x); }

// The CPU's forms, which keep the digits of small outputs: Φ(x) = erfc(−x/√2)/2,
// 0.5·x·(1 + tanh u) = x·sigmoid(2u), tanh(softplus(x)) = n/(n + 2) with n = e^x(e^x + 2).
__device__ float activation_value(const ActivationSpec& a, float x) {
  switch (a.kind) {
    case Act::Linear: return x;
    case Act::Relu: return x > 0.0f ? x : 0.0f;
    case Act::ReluClipped: return x >= a.gamma ? fminf(x, a.beta) : a.alpha * (x - a.gamma);
    case Act::Relu6: return fminf(fmaxf(x, 0.0f), 6.0f);
    case Act::Sigmoid: return logistic(x).p;
    case Act::Tanh: return tanhf(x);
    case Act::Elu: return x > 0.0f ? x : a.alpha * expm1f(x);
    case Act::Selu: return x > 0.0f ? kSeluScale * x : (kSeluScale * kSeluAlpha) * expm1f(x);
    case Act::Gelu: return 0.5f * x * erfcf(-x * kInvSqrt2);
    case Act::GeluTanh: return x * logistic(2.0f * gelu_tanh_u(x)).p;
    case Act::Swish: return x * logistic(x).p;
    case Act::LeakyRelu: return x >= 0.0f ? x : a.alpha * x;
    case Act::Softplus: return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
    case Act::Softsign: return x / (1.0f + fabsf(x));
    case Act::HardSigmoid: return hard_sigmoid(x);
    case Act::HardSwish: return x * hard_sigmoid(x);
    case Act::Exponential: return expf(x);
    case Act::Mish: {
      if (x > kMishLinear) return x;
      const float e = expf(x), n = e * (e + 2.0f);
      return x * (n / (n + 2.0f));
    }
    case Act::Affine: return x * a.alpha + a.beta;
    case Act::Softmax: break;
  }
  return x;  // Softmax: not element-wise, never launched (the bindings route it)
}

// dy/dx at x (y for Exponential), with the CPU's conventions at the kinks (see
// cpu/activation.cpp's activation_backward).
__device__ float activation_slope(const ActivationSpec& a, float x, float y) {
  switch (a.kind) {
    case Act::Linear: return 1.0f;
    case Act::Relu: return x > 0.0f ? 1.0f : 0.0f;
    case Act::ReluClipped: return x > a.gamma ? (x < a.beta ? 1.0f : 0.0f) : a.alpha;
    case Act::Relu6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
    case Act::Sigmoid: {
      const Logistic s = logistic(x);
      return s.p * s.q;
    }
    case Act::Tanh: {  // 1 − tanh² = 4e/(1 + e)², e = e^−2|x|: no cancellation
      const float e = expf(-2.0f * fabsf(x)), d = 1.0f + e;
      return 4.0f * e / (d * d);
    }
    case Act::Elu: return x > 0.0f ? 1.0f : a.alpha * expf(x);
    case Act::Selu: return x > 0.0f ? kSeluScale : (kSeluScale * kSeluAlpha) * expf(x);
    case Act::Gelu:
      return 0.5f * erfcf(-x * kInvSqrt2) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
    case Act::GeluTanh: {
      const Logistic s = logistic(2.0f * gelu_tanh_u(x));
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
      return s.p + 2.0f * x * du * (s.p * s.q);
    }
    case Act::Swish: {
      const Logistic s = logistic(x);
      return s.p * (1.0f + x * s.q);
    }
    case Act::LeakyRelu: return x > 0.0f ? 1.0f : a.alpha;
    case Act::Softplus: return logistic(x).p;
    case Act::Softsign: {
      const float r = 1.0f / (1.0f + fabsf(x));
      return r * r;
    }
    case Act::HardSigmoid: return x > -3.0f && x < 3.0f ? 1.0f / 6.0f : 0.0f;
    case Act::HardSwish: return x > -3.0f ? (x < 3.0f ? (2.0f * x + 3.0f) / 6.0f : 1.0f) : 0.0f;
    case Act::Exponential: return y;
    case Act::Mish: {
      if (x > kMishLinear) return 1.0f;
      const float e = expf(x), n = e * (e + 2.0f), d = n + 2.0f;
      return n / d + x * (4.0f * e * (1.0f + e)) / (d * d);
    }
    case Act::Affine: return a.alpha;
    case Act::Softmax: break;
  }
  return 1.0f;
}

// The kind is the same for every thread, so its switch never diverges.
__global__ void activation_forward_kernel(ActivationSpec a, int64_t count, const float* x,
                                          float* y) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    y[i] = activation_value(a, x[i]);
  }
}

__global__ void activation_backward_kernel(ActivationSpec a, int64_t count, const float* x,
                                           const float* y, const float* dy, float* dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    dx[i] = dy[i] * activation_slope(a, x[i], y[i]);
  }
}

// One warp per row, as softmax_xent.cu: 8 warps per 256-thread block, at most kMaxRowBlocks
// blocks (the grid-stride loop covers the rest).
constexpr int kRowThreads = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kRowThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kMaxRowBlocks = 4096;

// Butterfly sum: lanes i and i^offset add the same two values at every step, so every lane
// ends with the same bits, and the order is fixed.
__device__ float warp_sum(float value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullMask, value, offset);
  }
  return value;
}

// dx = y·(dy − Σ_j dy_j·y_j). Rows are warp-uniform, so every lane of a warp reaches the
// full-mask shuffles. Each lane writes only the columns it read, after the sum: dx may be dy.
__global__ void softmax_backward_kernel(int64_t n, int64_t classes, const float* y,
                                        const float* dy, float* dx) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       row < n; row += warps) {
    const float* yr = y + row * classes;
    const float* dyr = dy + row * classes;
    float* dxr = dx + row * classes;
    float dot = 0.0f;
    for (int64_t j = lane; j < classes; j += kWarp) dot += yr[j] * dyr[j];
    dot = warp_sum(dot);
    for (int64_t j = lane; j < classes; j += kWarp) dxr[j] = yr[j] * (dyr[j] - dot);
  }
}

}  // namespace

void activation_forward(const ActivationSpec& a, int64_t count, const float* x, float* y,
                        const Exec& ex) {
  if (count <= 0) return;
  activation_forward_kernel<<<grid_blocks(count), kGridThreads, 0, stream_of(ex)>>>(a, count,
                                                                                   x, y);
  check_launch("activation_forward_kernel");
}

void activation_backward(const ActivationSpec& a, int64_t count, const float* x,
                         const float* y, const float* dy, float* dx, const Exec& ex) {
  if (count <= 0) return;
  activation_backward_kernel<<<grid_blocks(count), kGridThreads, 0, stream_of(ex)>>>(
      a, count, x, y, dy, dx);
  check_launch("activation_backward_kernel");
}

void softmax_backward(int64_t n, int64_t classes, const float* y, const float* dy, float* dx,
                      const Exec& ex) {
  if (n <= 0 || classes <= 0) return;
  const int blocks = static_cast<int>(
      std::min<int64_t>((n + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxRowBlocks));
  softmax_backward_kernel<<<blocks, kRowThreads, 0, stream_of(ex)>>>(n, classes, y, dy, dx);
  check_launch("softmax_backward_kernel");
}

}  // namespace fastnn::cuda
