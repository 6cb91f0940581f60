// softmax_xent.cpp — softmax + cross-entropy fused, forward and backward in one pass per
// row: loss_i = logsumexp(z_i) − z_i[label_i], dz_i = (softmax(z_i) − onehot_i) / n, and
// its form for any targets t (categorical_cross_entropy). Subtracting the row max first
// keeps exp() in range for any finite logits. Row losses are summed in row order in
// double, so the mean does not depend on the thread count. (The element-wise losses,
// sigmoid and regression, are in loss.cpp.)
#include <cmath>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

struct RowExp {
  float max;
  float others;  // Σ e[j] without the first maximum's e = 1: the sum is 1 + others
};

// e[j] = exp(z[j] − max z): at most 1, so the sum cannot overflow. The 1 of the
// maximum is kept out of the sum, so log(1 + others) can be taken with log1p: a
// confident row's loss is tiny, and log(sum) would round most of its digits away.
static inline RowExp exp_shifted(const float* z, float* e, int64_t classes) {
  int64_t top = 0;
  for (int64_t j = 1; j < classes; ++j) top = z[j] > z[top] ? j : top;
  const float max = z[top];
  float others = 0.0f;
  for (int64_t j = 0; j < classes; ++j) {
    e[j] = std::exp(z[j] - max);
    if (j != top) others += e[j];
  }
  return {max, others};
}

}  // namespace

// Row-wise softmax, for predictions.
void softmax(int64_t n, int64_t classes, const float* logits, float* probs, const Exec& ex) {
  parallel_for(n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      float* p = probs + i * classes;
      const float inv = 1.0f / (1.0f + exp_shifted(logits + i * classes, p, classes).others);
      for (int64_t j = 0; j < classes; ++j) p[j] *= inv;
    }
  });
}

void softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                           const float* labels, float* dlogits, double* loss, const Exec& ex) {
  float* row_loss = ex.workspace;
  const float inv_n = 1.0f / static_cast<float>(n);
  parallel_for(n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const float* z = logits + i * classes;
      float* dz = dlogits + i * classes;
      const auto label = static_cast<int64_t>(labels[i]);
      const RowExp row = exp_shifted(z, dz, classes);
      // softmax − 1 at the label is −(Σ_{j≠label} e_j) / Σ e_j, summed directly: as
      // p − 1 it would round to 0 for a confident row.
      float rest = 0.0f;
      for (int64_t j = 0; j < classes; ++j) rest += j == label ? 0.0f : dz[j];
      const float scale = inv_n / (1.0f + row.others);
      for (int64_t j = 0; j < classes; ++j) dz[j] *= scale;
      dz[label] = -rest * scale;
      row_loss[i] = std::log1p(row.others) + (row.max - z[label]);
    }
  });
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += row_loss[i];
  *loss = total / static_cast<double>(n);
}

// Any targets t, T = Σ_j t_j: loss_i = Σ_j t_j·(logsumexp(z) − z_j) = T·log1p(others) +
// Σ_j t_j·(max − z_j), the differences taken in double (finite for any finite logits, so
// a zero target times a huge difference stays 0). dz_j = (p_j·T − t_j)/n, formed as
// (e_j·T₋ⱼ − t_j·S₋ⱼ)/(S·n) with T₋ⱼ = T − t_j and S₋ⱼ = S − e_j (S = Σ e): with one-hot
// targets that is softmax_cross_entropy's −rest at the label, and it keeps the digits of
// any p_j·T ≈ t_j that a confident row would otherwise cancel to 0.
void categorical_cross_entropy(int64_t n, int64_t classes, const float* logits,
                               const float* targets, float* dlogits, double* loss,
                               const Exec& ex) {
  if (n <= 0 || classes <= 0) return;
  float* row_loss = ex.workspace;
  const float inv_n = 1.0f / static_cast<float>(n);
  parallel_for(n, ex.threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const float* z = logits + i * classes;
      const float* t = targets + i * classes;
      float* dz = dlogits + i * classes;
      const RowExp row = exp_shifted(z, dz, classes);
      double total_t = 0.0, shifted = 0.0;  // T and Σ_j t_j·(max − z_j)
      for (int64_t j = 0; j < classes; ++j) {
        total_t += t[j];
        shifted += static_cast<double>(t[j]) * (static_cast<double>(row.max) - z[j]);
      }
      // Where e_j = 1 (the first maximum, or a tie), S₋ⱼ is `others` exactly; elsewhere
      // S >= 1 + e_j, so S − e_j cancels no digits.
      const float sum = 1.0f + row.others;
      const float scale = inv_n / sum;
      for (int64_t j = 0; j < classes; ++j) {
        const float e = dz[j];
        const float others_e = e == 1.0f ? row.others : sum - e;
        const auto others_t = static_cast<float>(total_t - t[j]);
        dz[j] = (e * others_t - t[j] * others_e) * scale;
      }
      row_loss[i] = static_cast<float>(total_t * std::log1p(row.others) + shifted);
    }
  });
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += row_loss[i];
  *loss = total / static_cast<double>(n);
}

}  // namespace fastnn::cpu::FASTNN_ISA
