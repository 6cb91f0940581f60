// ops.h — the op interface every backend implements: raw pointers plus shapes, no
// allocation. Callers size the scratch memory with the *_workspace functions below and
// pass it in through Exec, so a compiled network can allocate everything once.
#pragma once

#include <cstdint>

namespace fastnn {

// How a kernel may run: the number of threads it may use and its scratch memory.
struct Exec {
  int threads = 1;
  float* workspace = nullptr;
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

// Blocking shared by every ISA (Goto's scheme). A kc×nc panel of B is packed once and
// reused by every mc-row block of A: kc·nc·4 B = 768 KiB sits in the 2 MiB L2, and an
// mc×kc block of A (144 KiB), packed or not, streams through it. kc = 384 covers the seed CNN's conv
// patches (9, 288; 576 in two halves) without a short leftover block. mc and nc are
// multiples of every ISA's MR and NR.
constexpr int64_t kGemmKC = 384;
constexpr int64_t kGemmMC = 96;
constexpr int64_t kGemmNC = 512;
constexpr int64_t kGemmPackFloats = kGemmKC * (kGemmNC + kGemmMC);

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

// NHWC max-pooling with 'valid' padding.
struct Pool2dGeometry {
  int64_t n, h, w, c;
  int64_t pool_h, pool_w;
  int64_t stride_h, stride_w;
  int64_t oh, ow;
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

// One table per CPU ISA path; dispatch.cpp picks one at run time.
struct CpuKernels {
  const char* isa;
  void (*gemm)(const Gemm& g, const Exec& ex);
  void (*sum_rows)(int64_t rows, int64_t cols, const float* x, float* out, const Exec& ex);
  void (*conv2d_forward)(const Conv2dGeometry& g, const float* x, const float* w,
                         const float* bias, bool relu, float* y, const Exec& ex);
  void (*conv2d_backward_data)(const Conv2dGeometry& g, const float* w, const float* dy,
                               float* dx, const Exec& ex);
  // dw, db = the filter and bias gradients, or += them when accumulate.
  void (*conv2d_backward_filter)(const Conv2dGeometry& g, const float* x, const float* dy,
                                 float* dw, float* db, bool accumulate, const Exec& ex);
  void (*maxpool2d_forward)(const Pool2dGeometry& g, const float* x, float* y,
                            int32_t* argmax, const Exec& ex);
  // relu_y, when not null, is the pool's output y and its input came out of a ReLU: the
  // gradient then flows only where y > 0, which is that ReLU's backward fused in (at the
  // argmax the ReLU's output is y itself).
  void (*maxpool2d_backward)(const Pool2dGeometry& g, const float* dy,
                             const int32_t* argmax, const float* relu_y, float* dx,
                             const Exec& ex);
  void (*relu_forward)(int64_t count, const float* x, float* y, const Exec& ex);
  void (*relu_backward)(int64_t count, const float* x, const float* dy, float* dx,
                        const Exec& ex);
  // Writes x · mask into y and the mask (0 or 1/(1 − rate)) into mask.
  void (*dropout_forward)(int64_t count, const float* x, float* y, float* mask,
                          const DropoutStep& step, const Exec& ex);
  void (*softmax)(int64_t n, int64_t classes, const float* logits, float* probs,
                  const Exec& ex);
  double (*softmax_cross_entropy)(int64_t n, int64_t classes, const float* logits,
                                  const int32_t* labels, float* dlogits, const Exec& ex);
  void (*adam_update)(int64_t count, float* param, const float* grad, float* m, float* v,
                      const AdamStep& step, const Exec& ex);
  void (*sgd_update)(int64_t count, float* param, const float* grad, float* velocity,
                     const SgdStep& step, const Exec& ex);
};

// ---- scratch sizes (floats), for `threads` workers --------------------------------
// Each worker's share starts on a 64-byte boundary.

static inline int64_t round_to_line(int64_t floats) { return (floats + 15) / 16 * 16; }

static inline int64_t gemm_workspace(int threads) { return threads * kGemmPackFloats; }

// Images per GEMM: enough to give the GEMM at least one full mc block of rows, so a
// small feature map (the seed CNN's third conv has 9 output pixels) does not repack the
// weights for a handful of rows.
static inline int64_t conv2d_images_per_gemm(const Conv2dGeometry& g) {
  const int64_t images = (kGemmMC + g.out_pixels() - 1) / g.out_pixels();
  return images < g.n ? images : g.n;
}

// Per worker: the im2col matrix of one group of images and GEMM packing.
static inline int64_t conv2d_worker_floats(const Conv2dGeometry& g) {
  return round_to_line(conv2d_images_per_gemm(g) * g.out_pixels() * g.patch()) + kGemmPackFloats;
}

// Convolutions split the batch, so at most n workers take part.
static inline int64_t conv2d_workers(const Conv2dGeometry& g, int threads) {
  return threads < g.n ? threads : g.n;
}

static inline int64_t conv2d_forward_workspace(const Conv2dGeometry& g, int threads) {
  return conv2d_workers(g, threads) * conv2d_worker_floats(g);
}

static inline int64_t conv2d_backward_data_workspace(const Conv2dGeometry& g, int threads) {
  return conv2d_workers(g, threads) * conv2d_worker_floats(g);
}

// Each worker also keeps a partial dW and db over its slice of the batch; the partials
// are summed in worker order, so the result never depends on timing.
static inline int64_t conv2d_filter_partial_floats(const Conv2dGeometry& g) {
  return round_to_line(g.patch() * g.cout + g.cout);
}

static inline int64_t conv2d_backward_filter_workspace(const Conv2dGeometry& g, int threads) {
  return conv2d_workers(g, threads) * (conv2d_worker_floats(g) + conv2d_filter_partial_floats(g));
}

static inline int64_t softmax_cross_entropy_workspace(int64_t n) { return n; }

}  // namespace fastnn
