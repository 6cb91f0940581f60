// activation.cpp — element-wise layers: ReLU and its gradient, dropout (whose gradient is
// the same multiply by the stored mask), every other ops.h activation kind forward and
// backward, and the softmax's gradient. Loops are written on whole vectors: a scalar
// `x > 0 ? dy : 0` compiles to a branch that mispredicts on every other random sign, and
// glibc's tanhf costs some 30 expf, so the kinds built on e^x use a vector exp (Cephes's).
// Threads take blocks of 16 Ki floats (64 KiB): below that, waking a thread costs more
// than the work.
#include <cmath>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

constexpr int64_t kBlock = 16384;

void relu_forward(int64_t count, const float* x, float* y, const Exec& ex) {
  parallel_for_blocks(count, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
    for_each_vector(begin, end, [=](int64_t i, int64_t lanes) {
      const vfloat v = load_n(x + i, lanes);
      store_n(y + i, v > 0.0f ? v : vfloat{}, lanes);
    });
  });
}

// Zero gradient at x == 0, as TensorFlow and PyTorch define it.
void relu_backward(int64_t count, const float* x, const float* dy, float* dx, const Exec& ex) {
  parallel_for_blocks(count, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
    for_each_vector(begin, end, [=](int64_t i, int64_t lanes) {
      store_n(dx + i, load_n(x + i, lanes) > 0.0f ? load_n(dy + i, lanes) : vfloat{}, lanes);
    });
  });
}

void dropout_forward(int64_t count, const float* x, float* y, float* mask,
                     const DropoutStep& step, const Exec& ex) {
  parallel_for_blocks(count, kBlock, ex.threads, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const bool keep = (splitmix64(step.stream + static_cast<uint64_t>(i)) >> 40) >= step.threshold;
      mask[i] = keep ? step.scale : 0.0f;
      y[i] = x[i] * mask[i];
    }
  });
}

// ---- the other activation kinds (ops.h Act) ------------------------------------------
// Every element takes the same code path wherever it lies (a tail runs the vector code on
// fewer lanes), so the bits do not depend on the thread count. The kinds built on e^x run
// on whole vectors with vexp below; those that need erfc, expm1 or log1p call <cmath> one
// element at a time. Gradients are formed from x, in forms that neither cancel nor
// overflow; Exponential's is y itself.

namespace {

constexpr float kSeluScale = 1.05070098735548049342f;  // Keras's selu constants
constexpr float kSeluAlpha = 1.67326324235437728482f;
constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;   // the normal density at 0
constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // GeluTanh's sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;
// Past 20, tanh(softplus(x)) = 1 − 2/(e^2x + 2e^x + 2) is 1 to within 1e-17 (and e^2x
// would overflow past 44): Mish is x there, its gradient 1.
constexpr float kMishLinear = 20.0f;

// y[i] = f(x[i]), f on whole vectors.
template <class F>
void map_vectors(int64_t count, const float* x, float* y, int threads, F f) {
  parallel_for_blocks(count, kBlock, threads, [=](int64_t begin, int64_t end) {
    for_each_vector(begin, end, [=](int64_t i, int64_t lanes) {
      store_n(y + i, f(load_n(x + i, lanes)), lanes);
    });
  });
}

// dx[i] = dy[i] · slope(in[i]) on whole vectors; `in` is x or y, as the kind needs.
template <class F>
void scale_vectors(int64_t count, const float* in, const float* dy, float* dx, int threads,
                   F slope) {
  parallel_for_blocks(count, kBlock, threads, [=](int64_t begin, int64_t end) {
    for_each_vector(begin, end, [=](int64_t i, int64_t lanes) {
      store_n(dx + i, load_n(dy + i, lanes) * slope(load_n(in + i, lanes)), lanes);
    });
  });
}

template <class F>
void map_scalars(int64_t count, const float* x, float* y, int threads, F f) {
  parallel_for_blocks(count, kBlock, threads, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
}

template <class F>
void scale_scalars(int64_t count, const float* x, const float* dy, float* dx, int threads,
                   F slope) {
  parallel_for_blocks(count, kBlock, threads, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * slope(x[i]);
  });
}

// Comparisons written so that a NaN passes through (a NaN compares false).
inline vfloat vmin(vfloat a, vfloat b) { return b < a ? b : a; }
inline vfloat vmax(vfloat a, vfloat b) { return b > a ? b : a; }
inline vfloat vabs(vfloat v) { return v < 0.0f ? -v : v; }
inline vfloat clamp(vfloat v, float lo, float hi) {
  return vmin(vmax(v, broadcast(lo)), broadcast(hi));
}
inline vfloat hard_sigmoid(vfloat v) { return clamp(v + 3.0f, 0.0f, 6.0f) / 6.0f; }

// e^x as Cephes's expf: x = n·ln2 + r with |r| <= ln2/2 (ln2 in two parts, so r is exact
// to float), e^r by its degree-7 polynomial (about 1 ulp), times 2^n formed in the exponent
// bits as two factors 2^h·2^(n−h), each a normal float for every n of the clamped range
// [−105, 88.8]: outputs overflow to inf and underflow through the denormals to 0 as e^x.
inline vfloat vexp(vfloat x) {
  x = clamp(x, -105.0f, 88.8f);
  const float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const vfloat n = (x * 1.44269504088896341f + kRound) - kRound;
  const vfloat r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  vfloat p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vint ni = __builtin_convertvector(n, vint), h = ni >> 1;
  const vint one_bits = vint{} + 127;
  return p * reinterpret_cast<vfloat>((h + one_bits) << 23) *
         reinterpret_cast<vfloat>((ni - h + one_bits) << 23);
}

// sigmoid(z) and 1 − sigmoid(z), each from e^−|z| <= 1, so neither cancels nor overflows.
struct Logistic {
  vfloat p, q;
};
inline Logistic logistic(vfloat z) {
  const vfloat e = vexp(-vabs(z));
  const vfloat r = 1.0f / (1.0f + e), er = e * r;
  return {z >= 0.0f ? r : er, z >= 0.0f ? er : r};
}

// tanh: (1 − e)/(1 + e) with e = e^−2|x|, the sign put back; below |x| = 0.625, where
// 1 − e would cancel, Cephes's tanhf polynomial (odd in x, so −0 stays −0).
inline vfloat vtanh(vfloat x) {
  const vfloat e = vexp(-2.0f * vabs(x));
  const vfloat large = (1.0f - e) / (1.0f + e);
  const vfloat z = x * x;
  vfloat p = -5.70498872745e-3f * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const vfloat small = p * z * x + x;
  return vabs(x) < 0.625f ? small : (x < 0.0f ? -large : large);
}

// 1 − tanh²(x) = 4e/(1 + e)², e = e^−2|x|: no cancellation where tanh rounds to ±1.
inline vfloat tanh_slope(vfloat x) {
  const vfloat e = vexp(-2.0f * vabs(x));
  const vfloat d = 1.0f + e;
  return 4.0f * e / (d * d);
}

// Φ(x) = erfc(−x/√2)/2 keeps the digits of a negative x's small Φ, which (1 + erf)/2 loses.
inline float gelu(float x) { return 0.5f * x * std::erfc(-x * kInvSqrt2); }
inline float gelu_slope(float x) {
  return 0.5f * std::erfc(-x * kInvSqrt2) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
}

// 0.5·x·(1 + tanh u) = x·sigmoid(2u), likewise without the cancellation of 1 + tanh u.
inline vfloat gelu_tanh_u(vfloat x) { return kSqrt2OverPi * (x + kGeluCubic * x * x * x); }
inline vfloat gelu_tanh(vfloat x) { return x * logistic(2.0f * gelu_tanh_u(x)).p; }
inline vfloat gelu_tanh_slope(vfloat x) {
  const Logistic s = logistic(2.0f * gelu_tanh_u(x));
  const vfloat du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return s.p + 2.0f * x * du * (s.p * s.q);
}

inline vfloat swish_slope(vfloat x) {
  const Logistic s = logistic(x);
  return s.p * (1.0f + x * s.q);
}

// tanh(softplus(x)) = n/(n + 2) with n = e^x·(e^x + 2); its derivative 4e^x(1 + e^x)/(n + 2)².
inline vfloat mish(vfloat x) {
  const vfloat e = vexp(vmin(x, broadcast(kMishLinear))), n = e * (e + 2.0f);
  return x > kMishLinear ? x : x * (n / (n + 2.0f));
}
inline vfloat mish_slope(vfloat x) {
  const vfloat e = vexp(vmin(x, broadcast(kMishLinear))), n = e * (e + 2.0f), d = n + 2.0f;
  return x > kMishLinear ? broadcast(1.0f) : n / d + x * (4.0f * e * (1.0f + e)) / (d * d);
}

}  // namespace

void activation_forward(const ActivationSpec& a, int64_t count, const float* x, float* y,
                        const Exec& ex) {
  const int t = ex.threads;
  const float alpha = a.alpha, beta = a.beta, gamma = a.gamma;
  switch (a.kind) {
    case Act::Linear:
      return map_vectors(count, x, y, t, [](vfloat v) { return v; });
    case Act::Relu:
      return relu_forward(count, x, y, ex);
    case Act::ReluClipped:
      return map_vectors(count, x, y, t, [=](vfloat v) {
        return v >= gamma ? vmin(v, broadcast(beta)) : alpha * (v - gamma);
      });
    case Act::Relu6:
      return map_vectors(count, x, y, t, [](vfloat v) { return clamp(v, 0.0f, 6.0f); });
    case Act::Sigmoid:
      return map_vectors(count, x, y, t, [](vfloat v) { return logistic(v).p; });
    case Act::Tanh:
      return map_vectors(count, x, y, t, vtanh);
    case Act::Elu:
      return map_scalars(count, x, y, t,
                         [=](float v) { return v > 0.0f ? v : alpha * std::expm1(v); });
    case Act::Selu:
      return map_scalars(count, x, y, t, [](float v) {
        return v > 0.0f ? kSeluScale * v : (kSeluScale * kSeluAlpha) * std::expm1(v);
      });
    case Act::Gelu:
      return map_scalars(count, x, y, t, gelu);
    case Act::GeluTanh:
      return map_vectors(count, x, y, t, gelu_tanh);
    case Act::Swish:
      return map_vectors(count, x, y, t, [](vfloat v) { return v * logistic(v).p; });
    case Act::LeakyRelu:
      return map_vectors(count, x, y, t, [=](vfloat v) { return v >= 0.0f ? v : alpha * v; });
    case Act::Softplus:
      return map_scalars(count, x, y, t, [](float v) {
        return std::fmax(v, 0.0f) + std::log1p(std::exp(-std::fabs(v)));
      });
    case Act::Softsign:
      return map_vectors(count, x, y, t, [](vfloat v) { return v / (1.0f + vabs(v)); });
    case Act::HardSigmoid:
      return map_vectors(count, x, y, t, hard_sigmoid);
    case Act::HardSwish:
      return map_vectors(count, x, y, t, [](vfloat v) { return v * hard_sigmoid(v); });
    case Act::Exponential:
      return map_vectors(count, x, y, t, vexp);
    case Act::Mish:
      return map_vectors(count, x, y, t, mish);
    case Act::Affine:
      return map_vectors(count, x, y, t, [=](vfloat v) { return v * alpha + beta; });
    case Act::Softmax:
      break;  // not element-wise: the bindings route it to the softmax kernels
  }
}

// Gradients at the kinks (one side's slope, as TensorFlow's gradients pick it): Relu,
// Relu6 and HardSigmoid 0 on every kink; LeakyRelu, Elu, Selu the left slope at 0;
// ReluClipped alpha at x == gamma (its Relu-like corner: 0 for a plain ReLU) and 0 from
// x == beta on; HardSwish 0 at −3 and 1 at 3 (x·hard_sigmoid's product rule there).
void activation_backward(const ActivationSpec& a, int64_t count, const float* x,
                         const float* y, const float* dy, float* dx, const Exec& ex) {
  const int t = ex.threads;
  const float alpha = a.alpha, beta = a.beta, gamma = a.gamma;
  const vfloat one = broadcast(1.0f), zero{};
  switch (a.kind) {
    case Act::Linear:
      return scale_vectors(count, x, dy, dx, t, [=](vfloat) { return one; });
    case Act::Relu:
      return relu_backward(count, x, dy, dx, ex);
    case Act::ReluClipped:
      return scale_vectors(count, x, dy, dx, t, [=](vfloat v) {
        return v > gamma ? (v < beta ? one : zero) : broadcast(alpha);
      });
    case Act::Relu6:
      return scale_vectors(count, x, dy, dx, t,
                           [=](vfloat v) { return v > 0.0f ? (v < 6.0f ? one : zero) : zero; });
    case Act::Sigmoid:
      return scale_vectors(count, x, dy, dx, t, [](vfloat v) {
        const Logistic s = logistic(v);
        return s.p * s.q;
      });
    case Act::Tanh:
      return scale_vectors(count, x, dy, dx, t, tanh_slope);
    case Act::Elu:
      return scale_vectors(count, x, dy, dx, t,
                           [=](vfloat v) { return v > 0.0f ? one : alpha * vexp(v); });
    case Act::Selu:
      return scale_vectors(count, x, dy, dx, t, [](vfloat v) {
        return v > 0.0f ? broadcast(kSeluScale) : (kSeluScale * kSeluAlpha) * vexp(v);
      });
    case Act::Gelu:
      return scale_scalars(count, x, dy, dx, t, gelu_slope);
    case Act::GeluTanh:
      return scale_vectors(count, x, dy, dx, t, gelu_tanh_slope);
    case Act::Swish:
      return scale_vectors(count, x, dy, dx, t, swish_slope);
    case Act::LeakyRelu:
      return scale_vectors(count, x, dy, dx, t,
                           [=](vfloat v) { return v > 0.0f ? one : broadcast(alpha); });
    case Act::Softplus:
      return scale_vectors(count, x, dy, dx, t, [](vfloat v) { return logistic(v).p; });
    case Act::Softsign:
      return scale_vectors(count, x, dy, dx, t, [](vfloat v) {
        const vfloat r = 1.0f / (1.0f + vabs(v));
        return r * r;
      });
    case Act::HardSigmoid:
      return scale_vectors(count, x, dy, dx, t, [=](vfloat v) {
        return v > -3.0f ? (v < 3.0f ? broadcast(1.0f / 6.0f) : zero) : zero;
      });
    case Act::HardSwish:
      return scale_vectors(count, x, dy, dx, t, [=](vfloat v) {
        return v > -3.0f ? (v < 3.0f ? (2.0f * v + 3.0f) / 6.0f : one) : zero;
      });
    case Act::Exponential:
      return scale_vectors(count, y, dy, dx, t, [](vfloat e) { return e; });
    case Act::Mish:
      return scale_vectors(count, x, dy, dx, t, mish_slope);
    case Act::Affine:
      return scale_vectors(count, x, dy, dx, t, [=](vfloat) { return broadcast(alpha); });
    case Act::Softmax:
      break;  // the bindings route it to softmax_backward
  }
}

// dx = y·(dy − Σ_j dy_j·y_j) per row. Threads take blocks of whole rows, about kBlock floats
// each; a row's sum runs in one fixed order (vector lanes, then the lanes in order).
void softmax_backward(int64_t n, int64_t classes, const float* y, const float* dy, float* dx,
                      const Exec& ex) {
  if (n <= 0 || classes <= 0) return;
  const int64_t rows_per_block = classes < kBlock ? kBlock / classes : 1;
  parallel_for_blocks(n, rows_per_block, ex.threads, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* yr = y + i * classes;
      const float* dyr = dy + i * classes;
      float* dxr = dx + i * classes;
      vfloat partial{};
      for_each_vector(0, classes, [&](int64_t j, int64_t lanes) {
        partial += load_n(yr + j, lanes) * load_n(dyr + j, lanes);
      });
      float dot = 0.0f;
      for (int l = 0; l < kLanes; ++l) dot += partial[l];
      for_each_vector(0, classes, [&](int64_t j, int64_t lanes) {
        store_n(dxr + j, load_n(yr + j, lanes) * (load_n(dyr + j, lanes) - dot), lanes);
      });
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
