// adam.cpp — the Adam update in one pass over a flat parameter array, Keras's form:
//   m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);  p −= α·m / (√v + ε)
// with α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) formed by the caller. Five streams of floats: the
// loop is memory-bound, so it only needs to vectorise and split across threads.
#include <cmath>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {

void adam_update(int64_t count, float* param, const float* grad, float* m, float* v,
                 const AdamStep& step, const Exec& ex) {
  constexpr int64_t kBlock = 16384;
  parallel_for_blocks(count, kBlock, ex.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = grad[i];
      m[i] += (g - m[i]) * step.one_minus_beta_1;
      v[i] += (g * g - v[i]) * step.one_minus_beta_2;
      param[i] -= step.alpha * m[i] / (std::sqrt(v[i]) + step.epsilon);
    }
  });
}

}  // namespace fastnn::cpu::FASTNN_ISA
