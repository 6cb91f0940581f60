// softmax_xent.cpp — softmax + cross-entropy fused, forward and backward in one pass per
// row: loss_i = logsumexp(z_i) − z_i[label_i], dz_i = (softmax(z_i) − onehot_i) / n.
// Subtracting the row max first keeps exp() in range for any finite logits. Row losses
// are summed in row order in double, so the mean does not depend on the thread count.
#include <cmath>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

struct RowExp {
  float max, sum;
};

// e[j] = exp(z[j] − max z): at most 1, so the sum cannot overflow.
static inline RowExp exp_shifted(const float* z, float* e, int64_t classes) {
  float max = z[0];
  for (int64_t j = 1; j < classes; ++j) max = z[j] > max ? z[j] : max;
  float sum = 0.0f;
  for (int64_t j = 0; j < classes; ++j) {
    e[j] = std::exp(z[j] - max);
    sum += e[j];
  }
  return {max, sum};
}

}  // namespace

// Row-wise softmax, for predictions.
void softmax(int64_t n, int64_t classes, const float* logits, float* probs, const Exec& ex) {
  parallel_for(n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      float* p = probs + i * classes;
      const float inv = 1.0f / exp_shifted(logits + i * classes, p, classes).sum;
      for (int64_t j = 0; j < classes; ++j) p[j] *= inv;
    }
  });
}

double softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                             const int32_t* labels, float* dlogits, const Exec& ex) {
  float* row_loss = ex.workspace;
  const float inv_n = 1.0f / static_cast<float>(n);
  parallel_for(n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const float* z = logits + i * classes;
      float* dz = dlogits + i * classes;
      const RowExp row = exp_shifted(z, dz, classes);
      const float scale = inv_n / row.sum;
      for (int64_t j = 0; j < classes; ++j) dz[j] *= scale;
      dz[labels[i]] -= inv_n;
      row_loss[i] = std::log(row.sum) + row.max - z[labels[i]];
    }
  });
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += row_loss[i];
  return total / static_cast<double>(n);
}

}  // namespace fastnn::cpu::FASTNN_ISA
