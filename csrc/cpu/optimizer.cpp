// optimizer.cpp — parameter updates in one pass over a flat array, in Keras's forms:
//   Adam: m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);  p −= α·m / (√v + ε)
//         with α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) formed by the caller;
//   SGD:  u = μ·u − lr·g;  p += u  (Nesterov: p += μ·u − lr·g);  μ = 0: p −= lr·g.
// Four or five streams of floats: memory-bound, so they only need to vectorise and
// split across threads.
#include <cmath>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

constexpr int64_t kOptimizerBlock = 16384;

void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, const Exec& ex) {
  parallel_for_blocks(count, kOptimizerBlock, ex.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = grad[i];
      m[i] += (g - m[i]) * step.one_minus_beta_1;
      v[i] += (g * g - v[i]) * step.one_minus_beta_2;
      param[i] -= step.alpha * m[i] / (std::sqrt(v[i]) + step.epsilon);
    }
  });
}

void sgd_update(int64_t count, float* param, const float* grad, float* velocity,
                const SgdStep& step, const Exec& ex) {
  parallel_for_blocks(count, kOptimizerBlock, ex.threads, [&](int64_t begin, int64_t end) {
    if (velocity == nullptr) {
      for (int64_t i = begin; i < end; ++i) param[i] -= step.learning_rate * grad[i];
      return;
    }
    for (int64_t i = begin; i < end; ++i) {
      velocity[i] = step.momentum * velocity[i] - step.learning_rate * grad[i];
      param[i] += step.nesterov ? step.momentum * velocity[i] - step.learning_rate * grad[i]
                                : velocity[i];
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
