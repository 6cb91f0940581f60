// ops.h — the one backend interface: the geometry of each op, its per-step numbers, and
// the table of kernels (FASTNN_KERNELS) that every backend fills. Callers size scratch
// memory with the table's *_workspace functions and pass it in through Exec.
#pragma once

#include <cstdint>

#include "augment.h"

namespace fastnn {

// How a kernel may run. On the CPU: the threads it may use; on the GPU: the stream it
// launches on (a cudaStream_t, kept opaque so this header needs no CUDA). Either way its
// scratch memory, in the backend's memory, sized by the table's *_workspace functions.
struct Exec {
  int threads = 1;
  float* workspace = nullptr;
  void* stream = nullptr;
};

// C[m×n] = op(A)[m×k] · op(B)[k×n], row-major with leading dimensions. op(A) = Aᵀ when
// trans_a (then A is stored k×m). The epilogue runs once the full sum is formed:
// C += product when accumulate, then + bias[col], then ReLU.
struct Gemm {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  bool trans_a = false;
  const float* b = nullptr;
  int64_t ldb = 0;
  bool trans_b = false;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
  const float* bias = nullptr;
  bool relu = false;
};

// NHWC input (n, h, w, cin), HWIO filter (kh, kw, cin, cout), NHWC output (n, oh, ow,
// cout). pad_top/pad_left are the zero rows/columns before the input ('same' padding);
// those after it are implied by the output size.
struct Conv2dGeometry {
  int64_t n, h, w, cin;
  int64_t kh, kw, cout;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left;
  int64_t oh, ow;
  int64_t patch() const { return kh * kw * cin; }   // one im2col row
  int64_t out_pixels() const { return oh * ow; }    // im2col rows per image
};

// Keras's output size along one axis: 'same' gives ceil(size / stride) and pads the
// total (out − 1)·stride + kernel − size, the odd one at the end; 'valid' needs
// kernel <= size (returns false otherwise) and gives (size − kernel) / stride + 1.
static inline bool conv_output_size(int64_t size, int64_t kernel, int64_t stride, bool same,
                                    int64_t* out, int64_t* pad_before) {
  if (same) {
    *out = (size + stride - 1) / stride;
    const int64_t total = (*out - 1) * stride + kernel - size;
    *pad_before = total > 0 ? total / 2 : 0;
    return true;
  }
  if (kernel > size) return false;
  *out = (size - kernel) / stride + 1;
  *pad_before = 0;
  return true;
}

// NHWC pooling. pad_top/pad_left: the window positions before the input ('same'
// padding, as conv_output_size forms it; 0 for 'valid'). Positions outside the input are
// never a maximum and are not counted in an average (Keras's 'same' pooling).
struct Pool2dGeometry {
  int64_t n, h, w, c;
  int64_t pool_h, pool_w;
  int64_t stride_h, stride_w;
  int64_t oh, ow;
  int64_t pad_top = 0, pad_left = 0;
};

// Element-wise activations, with Keras 3's definitions (keras.activations):
//   Relu max(x, 0); ReluClipped Keras's layers.ReLU: x >= gamma (threshold) ? min(x, beta
//   (max_value, +inf for none)) : alpha (negative_slope) · (x − gamma); Relu6 min(max(x,0),6);
//   Sigmoid 1/(1+e^−x); Tanh; Elu x > 0 ? x : alpha·(e^x − 1); Selu scale·elu(x, alpha0)
//   with Keras's constants; Gelu 0.5·x·(1 + erf(x/√2)) (approximate=False); GeluTanh the
//   tanh approximation; Swish (silu) x·sigmoid(x); LeakyRelu x >= 0 ? x : alpha·x;
//   Softplus log(1 + e^x); Softsign x/(1+|x|); HardSigmoid relu6(x + 3)/6; HardSwish
//   x·hard_sigmoid(x); Exponential e^x; Mish x·tanh(softplus(x)); Affine x·alpha + beta
//   (layers.Rescaling). Softmax is not element-wise: the softmax kernels run it.
enum class Act : int32_t {
  Linear, Relu, ReluClipped, Relu6, Sigmoid, Tanh, Elu, Selu, Gelu, GeluTanh, Swish,
  LeakyRelu, Softplus, Softsign, HardSigmoid, HardSwish, Exponential, Mish, Affine, Softmax
};

struct ActivationSpec {
  Act kind = Act::Linear;
  float alpha = 0.0f, beta = 0.0f, gamma = 0.0f;  // per kind, as above
};

// Batch normalisation over the last axis: x is rows × channels (rows = N·H·W for NHWC).
struct BatchNormGeometry {
  int64_t rows, channels;
  float epsilon, momentum;
};

// Element-wise regression losses, the mean over all elements (Keras's mean over the last
// axis, then over the batch): MeanSquared (y − t)², MeanAbsolute |y − t|, Huber
// |e| <= delta ? e²/2 : delta·(|e| − delta/2).
struct RegressionLoss {
  enum class Kind : int32_t { MeanSquared, MeanAbsolute, Huber } kind = Kind::MeanSquared;
  float delta = 1.0f;
};

// Keras Adam: alpha = lr·sqrt(1-β₂ᵗ)/(1-β₁ᵗ) is formed once per step by the caller, and
// so are 1-β₁ and 1-β₂, in double: 1 - 0.999f in float is off by 1.3e-5 relative.
struct AdamStep {
  float alpha, one_minus_beta_1, one_minus_beta_2, epsilon;
};

// Keras SGD; velocity is null when momentum is 0.
struct SgdStep {
  float learning_rate, momentum;
  bool nesterov;
};

// Dropout keeps x[i] with probability 1 − rate, scaled by 1/(1 − rate). Element i's coin
// is a hash of (stream, i), so masks depend on neither timing nor thread count:
// u_i = (splitmix64(stream + i) >> 40) · 2⁻²⁴, keep when u_i >= rate, i.e. when the
// 24-bit integer (splitmix64(stream + i) >> 40) >= threshold = ceil(rate · 2²⁴) (exact).
struct DropoutStep {
  uint32_t threshold;
  float scale;  // 1/(1 − rate), rounded to float once
  uint64_t stream;
};

// Functions both backends call: on the host, and on the device when nvcc compiles them.
#ifdef __CUDACC__
#define FASTNN_HOST_DEVICE __host__ __device__
#else
#define FASTNN_HOST_DEVICE
#endif

static inline FASTNN_HOST_DEVICE uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The epoch's order of n samples: position i of the shuffled epoch reads sample
// shuffle_index(key, i, n). A bijection of [0, n) with no table, so the GPU computes each
// batch's rows on the fly and the CPU draws the very same order: a 4-round Feistel network
// (splitmix64 as the round function) on the smallest 2^(2·half) >= n, cycle-walking
// values >= n back through it. The domain is < 4n, so a walk takes < 4 rounds on average.
static inline FASTNN_HOST_DEVICE uint64_t shuffle_index(uint64_t key, uint64_t i, uint64_t n) {
  int half = 1;
  while ((uint64_t{1} << (2 * half)) < n) ++half;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t value = i;
  do {
    uint64_t left = value >> half, right = value & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t mixed = left ^ (splitmix64(key + (round << 58) + right) & mask);
      left = right;
      right = mixed;
    }
    value = (left << half) | right;
  } while (value >= n);
  return value;
}

// ---- THE backend interface ------------------------------------------------------------
// Every kernel, one line each: its name and parameters. Pointers are in the backend's
// memory (host for the CPU, device for CUDA), kernels never allocate, outputs go through
// pointers. Each CPU ISA path (cpu/kernel_table.cpp) and the CUDA backend
// (cuda/kernel_table.cu) fill one Kernels table from this list, so adding an op is one
// line here plus its implementations.
#define FASTNN_KERNELS(X)                                                                   \
  X(gemm, (const Gemm& g, const Exec& ex))                                                 \
  /* out[j] = Σ_i x[i, j] over a rows × cols matrix */                                      \
  X(sum_rows, (int64_t rows, int64_t cols, const float* x, float* out, const Exec& ex))    \
  X(conv2d_forward, (const Conv2dGeometry& g, const float* x, const float* w,              \
                     const float* bias, bool relu, float* y, const Exec& ex))              \
  X(conv2d_backward_data, (const Conv2dGeometry& g, const float* w, const float* dy,       \
                           float* dx, const Exec& ex))                                     \
  /* dw, db = the filter and bias gradients, or += them when accumulate */                 \
  X(conv2d_backward_filter, (const Conv2dGeometry& g, const float* x, const float* dy,     \
                             float* dw, float* db, bool accumulate, const Exec& ex))       \
  /* argmax: the window index of each output's first maximum */                            \
  X(maxpool2d_forward, (const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax, \
                        const Exec& ex))                                                   \
  /* relu_y, when not null, is the pool's output y and its input came out of a ReLU: the   \
     gradient then flows only where y > 0, that ReLU's backward fused in */                \
  X(maxpool2d_backward, (const Pool2dGeometry& g, const float* dy, const int32_t* argmax,  \
                         const float* relu_y, float* dx, const Exec& ex))                  \
  /* avg: the mean of each window's positions inside the input */                        \
  X(avgpool2d_forward, (const Pool2dGeometry& g, const float* x, float* y, const Exec& ex))  \
  X(avgpool2d_backward, (const Pool2dGeometry& g, const float* dy, float* dx,               \
                         const Exec& ex))                                                  \
  /* augment.h: training draws each image's transform from s.stream; inference is the     \
     identity (y = x) except RandomCrop's center crop and resize */                       \
  X(augment, (const AugmentStep& s, const float* x, float* y, bool training,               \
              const Exec& ex))                                                             \
  X(relu_forward, (int64_t count, const float* x, float* y, const Exec& ex))               \
  X(relu_backward, (int64_t count, const float* x, const float* dy, float* dx,             \
                    const Exec& ex))                                                       \
  /* y = x · mask, mask = 0 or 1/(1 − rate) per element (DropoutStep) */                   \
  X(dropout_forward, (int64_t count, const float* x, float* y, float* mask,                \
                      const DropoutStep& step, const Exec& ex))                            \
  /* any ActivationSpec but Softmax; x the input, y the output (backward reads what the   \
     kind needs); y may be x, dx may be dy */                                              \
  X(activation_forward, (const ActivationSpec& a, int64_t count, const float* x, float* y, \
                         const Exec& ex))                                                  \
  X(activation_backward, (const ActivationSpec& a, int64_t count, const float* x,          \
                          const float* y, const float* dy, float* dx, const Exec& ex))     \
  X(softmax, (int64_t n, int64_t classes, const float* logits, float* probs,               \
              const Exec& ex))                                                             \
  /* dx = y · (dy − Σ_j dy_j·y_j) per row, y the softmax's output; dx may be dy */         \
  X(softmax_backward, (int64_t n, int64_t classes, const float* y, const float* dy,        \
                       float* dx, const Exec& ex))                                         \
  /* batch statistics (biased variance) normalise x; mean and inv_std = 1/sqrt(var + eps)  \
     are kept for the backward; moving_* = moving_*·momentum + batch_*·(1 − momentum).     \
     gamma/beta null: scale 1 / offset 0. Workspace (this and the backward's):             \
     batchnorm_workspace floats */                                                         \
  X(batchnorm_forward_training, (const BatchNormGeometry& g, const float* x,               \
                                 const float* gamma, const float* beta, float* y,          \
                                 float* mean, float* inv_std, float* moving_mean,          \
                                 float* moving_variance, const Exec& ex))                  \
  X(batchnorm_inference, (const BatchNormGeometry& g, const float* x, const float* gamma,  \
                          const float* beta, const float* moving_mean,                     \
                          const float* moving_variance, float* y, const Exec& ex))         \
  /* batch norm at inference folded into the conv or dense layer before it: with s =      \
     gamma/sqrt(moving_variance + epsilon) per channel, folded_kernel = kernel·s (kernel   \
     g.rows × g.channels, the channel last) and folded_bias = (bias − moving_mean)·s +    \
     beta; bias, gamma, beta may be null (0, 1, 0) */                                      \
  X(batchnorm_fold, (const BatchNormGeometry& g, const float* kernel, const float* bias,   \
                     const float* gamma, const float* beta, const float* moving_mean,      \
                     const float* moving_variance, float* folded_kernel,                   \
                     float* folded_bias, const Exec& ex))                                  \
  /* dgamma, dbeta, dx: each may be null (not wanted) */                                   \
  X(batchnorm_backward, (const BatchNormGeometry& g, const float* x, const float* gamma,   \
                         const float* mean, const float* inv_std, const float* dy,         \
                         float* dx, float* dgamma, float* dbeta, const Exec& ex))          \
  /* Losses. *loss (one double in the backend's memory) = the mean over the rows (over     \
     all elements for the element-wise ones); the gradient goes out wrt the kernel's input \
     (dlogits, dy). Workspace: loss_workspace(rows or count) floats.                       \
     softmax_cross_entropy: labels are class indices held in floats (exact below 2^24). */ \
  X(softmax_cross_entropy, (int64_t n, int64_t classes, const float* logits,               \
                            const float* labels, float* dlogits, double* loss,             \
                            const Exec& ex))                                               \
  /* softmax fused with −Σ_j t_j·log softmax_j for any targets t (one-hot, smoothed) */    \
  X(categorical_cross_entropy, (int64_t n, int64_t classes, const float* logits,           \
                                const float* targets, float* dlogits, double* loss,        \
                                const Exec& ex))                                           \
  /* sigmoid fused with binary cross-entropy, stable for any logit:                        \
     max(z, 0) − z·t + log1p(e^−|z|), gradient (sigmoid(z) − t)/count */                   \
  X(sigmoid_cross_entropy, (int64_t count, const float* logits, const float* targets,      \
                            float* dlogits, double* loss, const Exec& ex))                 \
  X(regression_loss, (const RegressionLoss& r, int64_t count, const float* y,              \
                      const float* targets, float* dy, double* loss, const Exec& ex))      \
  X(adam_update, (int64_t count, float* param, const float* grad, float* m, float* v,      \
                  const AdamStep& step, const Exec& ex))                                   \
  /* velocity is null when momentum is 0 */                                                \
  X(sgd_update, (int64_t count, float* param, const float* grad, float* velocity,          \
                 const SgdStep& step, const Exec& ex))

struct Kernels {
  const char* name;  // the CPU ISA path ("portable", "avx2", "avx512") or "cuda"
  // Scratch floats (Exec::workspace) for `threads` workers (the CPU's; CUDA ignores it):
  // a GEMM's, and a convolution's, enough for any of its three kernels on any batch of
  // up to g.n images (so one size serves a short last batch too).
  int64_t (*gemm_workspace)(int threads);
  int64_t (*conv2d_workspace)(const Conv2dGeometry& g, int threads);
  int64_t (*batchnorm_workspace)(const BatchNormGeometry& g, int threads);
#define FASTNN_KERNEL_FIELD(name, params) void(*name) params;
  FASTNN_KERNELS(FASTNN_KERNEL_FIELD)
#undef FASTNN_KERNEL_FIELD
};

// Every loss kernel's scratch: one float per row (or element) and a little more.
static inline int64_t loss_workspace(int64_t count) { return count + 64; }

}  // namespace fastnn
