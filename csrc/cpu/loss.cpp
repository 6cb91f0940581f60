// loss.cpp — the element-wise losses, each value and gradient in one pass: sigmoid +
// binary cross-entropy on logits, and the regression losses (squared, absolute, Huber).
// The mean is formed in double over fixed blocks of elements, each block's sum in order,
// then the blocks' in order, so its bits do not depend on the thread count. (The
// categorical cross-entropy, a softmax per row, is in softmax_xent.cpp.)
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fastnn::cpu::FASTNN_ISA {
namespace {

// 16 Ki elements per block, as activation.cpp's: tens of microseconds of work, worth
// waking a thread for. The block sums, one double (two floats) per block, fit
// loss_workspace(count) for any count.
constexpr int64_t kLossBlock = 16384;

// The mean over [0, count) of element_loss(i), which also writes element i's gradient.
template <class F>
double blocked_mean(int64_t count, const Exec& ex, F&& element_loss) {
  float* partials = ex.workspace;  // doubles, copied in and out: no alignment assumed
  parallel_for_blocks(count, kLossBlock, ex.threads, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; block += kLossBlock) {
      const int64_t block_end = std::min(block + kLossBlock, end);
      double sum = 0.0;
      for (int64_t i = block; i < block_end; ++i) sum += element_loss(i);
      std::memcpy(partials + 2 * (block / kLossBlock), &sum, sizeof sum);
    }
  });
  double total = 0.0;
  for (int64_t b = 0; b * kLossBlock < count; ++b) {
    double sum;
    std::memcpy(&sum, partials + 2 * b, sizeof sum);
    total += sum;
  }
  return total / static_cast<double>(count);
}

}  // namespace

// With e = exp(−|z|) <= 1 (never overflows) and s = e/(1 + e) = sigmoid(−|z|):
// loss = max(z, 0) − z·t + log1p(e), the first two as z·(1 − t) or −z·t so that a t near
// 1 does not cancel z − z·t; sigmoid(z) − t = (1 − t) − s for z >= 0, else s − t, which
// keeps the digits of a confident prediction's tiny gradient (sigmoid(z) = 1 − s would
// round to 1 and cancel against t = 1).
void sigmoid_cross_entropy(int64_t count, const float* logits, const float* targets,
                           float* dlogits, double* loss, const Exec& ex) {
  if (count <= 0) return;
  const float inv_count = 1.0f / static_cast<float>(count);
  *loss = blocked_mean(count, ex, [&](int64_t i) {
    const float z = logits[i], t = targets[i];
    const float e = std::exp(-std::fabs(z));
    const float s = e / (1.0f + e);
    dlogits[i] = (z >= 0.0f ? (1.0f - t) - s : s - t) * inv_count;
    return (z >= 0.0f ? z * (1.0f - t) : -z * t) + std::log1p(e);
  });
}

// e = y − t: MeanSquared e², gradient 2e; MeanAbsolute |e|, gradient sign(e) (0 at 0, as
// TensorFlow's); Huber |e| <= δ ? e²/2 : δ·(|e| − δ/2), gradient c = e clipped to [−δ, δ],
// the loss formed as c·(e − c/2): the same roundings as either branch, without a branch
// that random errors would mispredict. Gradients are divided by count: each loss is the
// mean over all elements.
void regression_loss(const RegressionLoss& r, int64_t count, const float* y,
                     const float* targets, float* dy, double* loss, const Exec& ex) {
  if (count <= 0) return;
  const float inv_count = 1.0f / static_cast<float>(count);
  switch (r.kind) {
    case RegressionLoss::Kind::MeanSquared:
      *loss = blocked_mean(count, ex, [&](int64_t i) {
        const float e = y[i] - targets[i];
        dy[i] = 2.0f * e * inv_count;
        return e * e;
      });
      break;
    case RegressionLoss::Kind::MeanAbsolute:
      *loss = blocked_mean(count, ex, [&](int64_t i) {
        const float e = y[i] - targets[i];
        dy[i] = static_cast<float>((e > 0.0f) - (e < 0.0f)) * inv_count;
        return std::fabs(e);
      });
      break;
    case RegressionLoss::Kind::Huber: {
      const float delta = r.delta;
      *loss = blocked_mean(count, ex, [&](int64_t i) {
        const float e = y[i] - targets[i];
        const float c = e > delta ? delta : e < -delta ? -delta : e;
        dy[i] = c * inv_count;
        return c * (e - 0.5f * c);
      });
      break;
    }
  }
}

}  // namespace fastnn::cpu::FASTNN_ISA
